package simulator

import (
	"net/http"
	"time"
)

// handleAPI serves the /v1 endpoints (§3, §4).
func (s *Simulator) handleAPI(w *bufWriter, rc *reqCtx) {
	c, ok := s.authenticate(w, rc)
	if !ok {
		return
	}
	if s.rateLimited(w, rc, c.ClientID) {
		return
	}
	if rc.req.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		s.problem(w, 405, "The Data API is read-only.")
		return
	}
	if rc.endpoint == "homes" {
		s.handleHomes(w, c)
		return
	}
	h := s.acct.home(rc.segs[1])
	if h == nil {
		if s.opts.ForeignHome403 {
			s.problem(w, 403, "Access to the home is forbidden.")
		} else {
			s.problem(w, 404, "Home not found")
		}
		return
	}
	if rc.endpoint == "devices" {
		list := []DeviceListItem{}
		for _, d := range s.acct.devices(h) {
			if c.has(d.spec.scope) {
				list = append(list, DeviceListItem{ID: d.id, ExternalID: d.externalID, Info: s.info(d), SupportedHistory: s.supported(d)})
			}
		}
		s.writeJSON(w, 200, DevicesResponse{Devices: list})
		return
	}
	d := s.acct.device(rc.segs[3])
	if d == nil || !d.listedUnder(h.id) {
		s.problem(w, 404, "Device not found")
		return
	}
	if !c.has(d.spec.scope) {
		if s.opts.MissingScope403 {
			s.problem(w, 403, "The token lacks the scope of this device's category.")
		} else {
			s.problem(w, 404, "Device not found")
		}
		return
	}
	if rc.endpoint == "device" {
		s.writeJSON(w, 200, s.deviceDetail(d, s.now()))
		return
	}
	s.handleHistory(w, rc, h, d)
}

func (s *Simulator) handleHomes(w *bufWriter, c accessClaims) {
	homes := []HomeItem{}
	if !c.has(ScopeHomesRead) {
		if s.opts.MissingHomesScope403 {
			s.problem(w, 403, "The token lacks the data-api-homes-read scope.")
			return
		}
	} else {
		for _, h := range s.acct.homes() {
			homes = append(homes, HomeItem{ID: h.id, Name: h.name})
		}
	}
	if s.opts.BareArrayHomes {
		s.writeJSON(w, 200, homes)
		return
	}
	s.writeJSON(w, 200, HomesResponse{Homes: homes})
}

// Account returns the ground truth of the account. For a generated account
// this materialises every home and device, which is fine for tests but is
// the one call that is not lazy.
func (s *Simulator) Account() Account {
	u := s.acct.user()
	a := Account{UserID: u.id, Email: u.email, Name: u.name}
	for _, h := range s.acct.homes() {
		hh := Home{ID: h.id, Name: h.name, Zone: h.zone}
		for _, d := range s.acct.devices(h) {
			hh.Devices = append(hh.Devices, s.groundTruth(d))
		}
		a.Homes = append(a.Homes, hh)
	}
	return a
}

func (s *Simulator) groundTruth(d *device) Device {
	dev := Device{
		ID: d.id, ExternalID: d.externalID, Name: d.name, Brand: d.brand, Model: d.model,
		Category: d.spec.category, Scope: d.spec.scope, Kind: d.spec.name, Zone: d.zone,
		HomeIDs:     append([]string(nil), d.homeIDs...),
		Resolutions: append([]string{}, d.resolutions...),
		Attributes:  s.attributes(d),
	}
	if len(d.resolutions) > 0 {
		dev.MaxRetentionDays = d.retention
		dev.PageSize = s.pageSize(d)
	}
	return dev
}

// DeviceState returns what GET /v1/homes/{homeID}/devices/{deviceID} serves
// at time at (scopes aside). For an unknown device, or one not listed under
// the home, it returns the zero DeviceDetail (empty ID).
func (s *Simulator) DeviceState(homeID, deviceID string, at time.Time) DeviceDetail {
	d := s.acct.device(deviceID)
	if d == nil || !d.listedUnder(homeID) {
		return DeviceDetail{}
	}
	return s.deviceDetail(d, at)
}
