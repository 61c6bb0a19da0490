package simulator

import (
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // the fixture zones must resolve in distroless images too
)

//go:embed fixtures/account.json
var fixtureJSON []byte

// Account is the ground truth of the simulated account: what a correct
// client must end up knowing.
type Account struct {
	UserID string
	Email  string
	Name   string
	Homes  []Home
}

// Home is one home of the account with the devices listed under it.
type Home struct {
	ID   string
	Name string
	// Zone is the IANA zone that gives history timestamps their offset. The
	// Data API never reveals it.
	Zone    string
	Devices []Device
}

// Device is the ground truth of one device.
type Device struct {
	ID         string
	ExternalID string
	Name       string
	Brand      string
	Model      string
	// Category is the hidden category used for scope filtering: "vehicle",
	// "charger", "thermostat", "energy_system" or "inverter". It never
	// appears in responses.
	Category string
	// Scope is the category scope that makes the device visible.
	Scope string
	// Kind is the simulator's device model: vehicle, charger, thermostat,
	// heatpump, battery or inverter.
	Kind string
	// Zone is the IANA zone of the device's first home; history uses it.
	Zone string
	// HomeIDs lists every home the device appears under (vehicles may
	// appear under several).
	HomeIDs []string
	// Resolutions is supportedHistory.resolutions (empty: no history).
	Resolutions []string
	// MaxRetentionDays is supportedHistory.maxRetentionDays (0 when omitted).
	MaxRetentionDays int
	// PageSize is the effective history page size.
	PageSize int
	// Attributes are the device's attributes as detail serves them.
	Attributes []Attribute
}

// kind is a device model: it fixes the hidden category, the capabilities and
// the history series.
type kind int

const (
	kindVehicle kind = iota
	kindCharger
	kindThermostat
	kindHeatPump
	kindBattery
	kindInverter
)

// Resolution names and their bit masks.
const (
	resQuarterHour = "quarterHour"
	resHour        = "hour"
	resDay         = "day"
	resMonth       = "month"
)

type resMask uint8

const (
	maskQH resMask = 1 << iota
	maskHour
	maskDay
	maskMonth
	maskAll = maskQH | maskHour | maskDay | maskMonth
)

func resBit(res string) resMask {
	switch res {
	case resQuarterHour:
		return maskQH
	case resHour:
		return maskHour
	case resDay:
		return maskDay
	case resMonth:
		return maskMonth
	}
	return 0
}

// metricSpec is one history series of a device kind.
type metricSpec struct {
	name     string  // dotted name, e.g. energyFlow.gridImport
	sum      bool    // aggregate by sum (energy) or mean (levels)
	res      resMask // resolutions at which the series exists
	holes    bool    // the series has holes (stitched from several sources)
	decimals int
}

// kindSpec describes a device kind.
type kindSpec struct {
	name     string
	category string
	scope    string
	// base is the finest history step; coarser periods aggregate it.
	base        time.Duration
	metrics     []metricSpec
	resolutions []string // for generated devices
	retention   int      // for generated devices
	pageSize    int      // for generated devices
}

var kindSpecs = map[kind]*kindSpec{
	kindVehicle: {name: "vehicle", category: "vehicle", scope: ScopeVehiclesRead},
	kindCharger: {name: "charger", category: "charger", scope: ScopeChargersRead},
	kindThermostat: {
		name: "thermostat", category: "thermostat", scope: ScopeThermostats, base: time.Hour,
		metrics: []metricSpec{
			{name: "temp.average", res: maskHour | maskDay, decimals: 2},
			{name: "temp.setpoint", res: maskHour, decimals: 1},
		},
		resolutions: []string{resHour, resDay}, retention: 365, pageSize: 168,
	},
	kindHeatPump: {
		name: "heatpump", category: "thermostat", scope: ScopeThermostats, base: time.Hour,
		metrics: []metricSpec{
			{name: "temp.average", res: maskHour | maskDay, decimals: 2},
			{name: "temp.setpoint", res: maskHour, decimals: 1},
			{name: "energy.consumed", sum: true, res: maskHour | maskDay, decimals: 1},
		},
		resolutions: []string{resHour, resDay}, retention: 365, pageSize: 100,
	},
	kindBattery: {
		name: "battery", category: "energy_system", scope: ScopeEnergySystems, base: 15 * time.Minute,
		metrics: []metricSpec{
			{name: "energyFlow.gridImport", sum: true, res: maskAll, holes: true, decimals: 1},
			{name: "energyFlow.gridExport", sum: true, res: maskAll, holes: true, decimals: 1},
			{name: "energyFlow.batteryCharged", sum: true, res: maskAll, holes: true, decimals: 1},
			{name: "energyFlow.batteryDischarged", sum: true, res: maskAll, holes: true, decimals: 1},
			{name: "energyFlow.loadConsumed", sum: true, res: maskAll, holes: true, decimals: 1},
			{name: "energyFlow.solarProduction", sum: true, res: maskAll, holes: true, decimals: 1},
			{name: "storage.stateOfCharge", res: maskQH | maskHour, decimals: 1},
			{name: "storage.availableEnergy", res: maskQH | maskHour, decimals: 0},
		},
		resolutions: []string{resQuarterHour, resHour, resDay, resMonth}, retention: 730, pageSize: 96,
	},
	kindInverter: {
		name: "inverter", category: "inverter", scope: ScopeInverters, base: time.Hour,
		metrics: []metricSpec{
			{name: "solar.production", sum: true, res: maskHour | maskDay | maskMonth, decimals: 1},
		},
		resolutions: []string{resHour, resDay, resMonth}, retention: 730, pageSize: 200,
	},
}

func kindByName(name string) (kind, bool) {
	for k, s := range kindSpecs {
		if s.name == name {
			return k, true
		}
	}
	return 0, false
}

// home is the internal form of a home.
type home struct {
	id, name, zone string
	loc            *time.Location
}

// device is the internal form of a device.
type device struct {
	id, uuid, externalID string
	name, brand, model   string
	kind                 kind
	spec                 *kindSpec
	homeIDs              []string
	zone                 string
	loc                  *time.Location
	resolutions          []string
	retention            int
	pageSize             int // from the fixture; 0 = default
	attributes           []Attribute
	key                  uint64 // hash of (seed, id): the root of all its values
}

func (d *device) listedUnder(homeID string) bool { return slices.Contains(d.homeIDs, homeID) }

func (d *device) supports(res string) bool { return slices.Contains(d.resolutions, res) }

// deviceID builds an opaque id as Tibber does (§5.2): unpadded base64url of
// "<brand> <backend> <category>:<uuid>".
func deviceID(brand, backend, idCategory, uuid string) string {
	s := strings.ToLower(brand) + " " + backend + " " + idCategory + ":" + uuid
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// userInfo is the account owner.
type userInfo struct{ id, email, name string }

// account is a source of homes and devices: the fixture or a generated one.
type account interface {
	user() userInfo
	homes() []*home
	home(id string) *home
	devices(h *home) []*device
	device(id string) *device
}

var (
	locMu    sync.Mutex
	locCache = map[string]*time.Location{}
)

func loadZone(name string) (*time.Location, error) {
	locMu.Lock()
	defer locMu.Unlock()
	if l, ok := locCache[name]; ok {
		return l, nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("load zone %q: %w", name, err)
	}
	locCache[name] = l
	return l, nil
}

func mustZone(name string) *time.Location {
	l, err := loadZone(name)
	if err != nil {
		panic(err)
	}
	return l
}

// fixtureAccount is the fixed account of fixtures/account.json.
type fixtureAccount struct {
	owner    userInfo
	homeList []*home
	homeByID map[string]*home
	devList  []*device
	devByID  map[string]*device
}

type fixtureFile struct {
	User struct {
		ID, Email, Name string
	} `json:"user"`
	Homes []struct {
		ID, Name, Zone string
	} `json:"homes"`
	Devices []struct {
		UUID             string      `json:"uuid"`
		Brand            string      `json:"brand"`
		Backend          string      `json:"backend"`
		IDCategory       string      `json:"idCategory"`
		Kind             string      `json:"kind"`
		ExternalID       string      `json:"externalId"`
		Name             string      `json:"name"`
		Model            string      `json:"model"`
		Homes            []string    `json:"homes"`
		Resolutions      []string    `json:"resolutions"`
		MaxRetentionDays int         `json:"maxRetentionDays"`
		PageSize         int         `json:"pageSize"`
		Attributes       []Attribute `json:"attributes"`
	} `json:"devices"`
}

func loadFixture(seed int64, data []byte) (*fixtureAccount, error) {
	var f fixtureFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse fixture: %w", err)
	}
	a := &fixtureAccount{
		owner:    userInfo{id: f.User.ID, email: f.User.Email, name: f.User.Name},
		homeByID: map[string]*home{},
		devByID:  map[string]*device{},
	}
	for _, h := range f.Homes {
		loc, err := loadZone(h.Zone)
		if err != nil {
			return nil, fmt.Errorf("fixture home %s: %w", h.ID, err)
		}
		hh := &home{id: h.ID, name: h.Name, zone: h.Zone, loc: loc}
		a.homeList = append(a.homeList, hh)
		a.homeByID[h.ID] = hh
	}
	for _, fd := range f.Devices {
		k, ok := kindByName(fd.Kind)
		if !ok {
			return nil, fmt.Errorf("fixture device %s: unknown kind %q", fd.UUID, fd.Kind)
		}
		if len(fd.Homes) == 0 {
			return nil, fmt.Errorf("fixture device %s: no homes", fd.UUID)
		}
		first, ok := a.homeByID[fd.Homes[0]]
		if !ok {
			return nil, fmt.Errorf("fixture device %s: unknown home %s", fd.UUID, fd.Homes[0])
		}
		spec := kindSpecs[k]
		for _, r := range fd.Resolutions {
			if resBit(r) == 0 || spec.base == 0 {
				return nil, fmt.Errorf("fixture device %s: resolution %q not possible for %s", fd.UUID, r, fd.Kind)
			}
		}
		id := deviceID(fd.Brand, fd.Backend, fd.IDCategory, fd.UUID)
		d := &device{
			id: id, uuid: fd.UUID, externalID: fd.ExternalID,
			name: fd.Name, brand: fd.Brand, model: fd.Model,
			kind: k, spec: spec, homeIDs: fd.Homes,
			zone: first.zone, loc: first.loc,
			resolutions: append([]string{}, fd.Resolutions...),
			retention:   fd.MaxRetentionDays, pageSize: fd.PageSize,
			attributes: fd.Attributes,
			key:        hashString(seed, "device", id),
		}
		a.devList = append(a.devList, d)
		a.devByID[id] = d
	}
	return a, nil
}

func (a *fixtureAccount) user() userInfo       { return a.owner }
func (a *fixtureAccount) homes() []*home       { return a.homeList }
func (a *fixtureAccount) home(id string) *home { return a.homeByID[id] }
func (a *fixtureAccount) device(id string) *device {
	return a.devByID[id]
}
func (a *fixtureAccount) devices(h *home) []*device {
	var out []*device
	for _, d := range a.devList {
		if d.listedUnder(h.id) {
			out = append(out, d)
		}
	}
	return out
}

// generatedAccount derives homes and devices from the seed on demand: no
// per-device state is kept, so 1,000 homes × 50 devices cost nothing until
// requested. Vehicles of a generated account appear under their own home
// only.
type generatedAccount struct {
	seed    int64
	n       int // homes
	perHome int
	homeKey uint64
	devKey  uint64
	owner   userInfo
}

var generatedZones = []string{"Europe/Oslo", "Europe/London", "Europe/Stockholm", "Europe/Berlin", "Europe/Helsinki", "Europe/Amsterdam"}

func newGeneratedAccount(seed int64, homes, perHome int) *generatedAccount {
	g := &generatedAccount{
		seed: seed, n: homes, perHome: perHome,
		homeKey: hashString(seed, "generated-home"),
		devKey:  hashString(seed, "generated-device"),
	}
	u := uuidFrom(hashString(seed, "user"), hashString(seed, "user", "2"), nil)
	g.owner = userInfo{id: u, email: fmt.Sprintf("sim-%d@example.com", uint16(hashString(seed, "email"))), name: "Simulated User"}
	return g
}

// uuidFrom formats a version-4 UUID from two hashes, with tail (at most 6
// bytes) placed at the end so the index can be read back.
func uuidFrom(a, b uint64, tail []byte) string {
	var u [16]byte
	for i := range 8 {
		u[i] = byte(a >> (8 * i))
		u[8+i] = byte(b >> (8 * i))
	}
	copy(u[16-len(tail):], tail)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func parseUUID(s string) ([16]byte, bool) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		return u, false
	}
	copy(u[:], b)
	return u, true
}

func (g *generatedAccount) user() userInfo { return g.owner }

func (g *generatedAccount) homeAt(i int) *home {
	tail := []byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
	id := uuidFrom(mix(g.homeKey, uint64(i)), mix(g.homeKey, uint64(i), 1), tail)
	zone := generatedZones[i%len(generatedZones)]
	names := []string{"Home", "Cabin", "Flat", "House", "Farm", "Cottage"}
	name := fmt.Sprintf("%s %d", names[mix(g.homeKey, uint64(i), 2)%uint64(len(names))], i+1)
	return &home{id: id, name: name, zone: zone, loc: mustZone(zone)}
}

func (g *generatedAccount) homes() []*home {
	out := make([]*home, g.n)
	for i := range out {
		out[i] = g.homeAt(i)
	}
	return out
}

func (g *generatedAccount) homeIndex(id string) (int, bool) {
	u, ok := parseUUID(id)
	if !ok {
		return 0, false
	}
	i := int(u[12])<<24 | int(u[13])<<16 | int(u[14])<<8 | int(u[15])
	if i < 0 || i >= g.n || g.homeAt(i).id != id {
		return 0, false
	}
	return i, true
}

func (g *generatedAccount) home(id string) *home {
	i, ok := g.homeIndex(id)
	if !ok {
		return nil
	}
	return g.homeAt(i)
}

func (g *generatedAccount) devices(h *home) []*device {
	hi, ok := g.homeIndex(h.id)
	if !ok {
		return nil
	}
	out := make([]*device, g.perHome)
	for j := range out {
		out[j] = g.deviceAt(hi, j, h)
	}
	return out
}

func (g *generatedAccount) device(id string) *device {
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil {
		return nil
	}
	s := string(raw)
	colon := strings.LastIndexByte(s, ':')
	if colon < 0 {
		return nil
	}
	u, ok := parseUUID(s[colon+1:])
	if !ok {
		return nil
	}
	hi := int(u[10])<<16 | int(u[11])<<8 | int(u[12])
	j := int(u[13])<<8 | int(u[14])
	if hi >= g.n || j >= g.perHome {
		return nil
	}
	d := g.deviceAt(hi, j, g.homeAt(hi))
	if d.id != id {
		return nil
	}
	return d
}

type devTemplate struct{ brand, backend, model, vinPrefix string }

var generatedTemplates = map[kind][]devTemplate{
	kindVehicle:    {{"Volkswagen", "enode", "ID.4", "WVW"}, {"Volvo", "volvo", "EX30", "YV1"}, {"BMW", "enode", "i4 eDrive40", "WBA"}, {"Tesla", "tesla", "Model Y", "5YJ"}, {"Audi", "enode", "Q4 e-tron", "WAU"}},
	kindCharger:    {{"Easee", "easee", "Home", ""}, {"go-e", "goe", "Gemini", ""}, {"myenergi", "myenergi", "zappi", ""}},
	kindThermostat: {{"Mill", "mill", "Heater Gen3", ""}, {"Ngenic", "ngenic", "Tune", ""}},
	kindHeatPump:   {{"NIBE", "myuplink", "S1255", ""}},
	kindBattery:    {{"Homevolt", "tibber", "Homevolt 13.8", ""}},
	kindInverter:   {{"SolarEdge", "solaredge", "SE8K", ""}, {"Huawei", "fusionsolar", "SUN2000-6KTL", ""}},
}

var roomNames = []string{"Living room", "Bedroom", "Kitchen", "Office", "Hall", "Bathroom", "Basement"}

func (g *generatedAccount) deviceAt(hi, j int, h *home) *device {
	k0 := mix(g.devKey, uint64(hi), uint64(j))
	// Kind weights: vehicle 15, charger 15, thermostat 25, heat pump 10,
	// battery 20, inverter 15.
	var k kind
	switch w := k0 % 100; {
	case w < 15:
		k = kindVehicle
	case w < 30:
		k = kindCharger
	case w < 55:
		k = kindThermostat
	case w < 65:
		k = kindHeatPump
	case w < 85:
		k = kindBattery
	default:
		k = kindInverter
	}
	spec := kindSpecs[k]
	tpls := generatedTemplates[k]
	t := tpls[mix(k0, 1)%uint64(len(tpls))]
	tail := []byte{byte(hi >> 16), byte(hi >> 8), byte(hi), byte(j >> 8), byte(j), byte(mix(k0, 2))}
	uuid := uuidFrom(mix(k0, 3), mix(k0, 4), tail)
	id := deviceID(t.brand, t.backend, spec.name, uuid)
	serial := strings.ToUpper(hex.EncodeToString([]byte{byte(mix(k0, 5)), byte(mix(k0, 6)), byte(mix(k0, 7)), byte(mix(k0, 8))}))
	var ext, name string
	var attrs []Attribute
	switch k {
	case kindVehicle:
		vin := fmt.Sprintf("%sZZZ%s%06d", t.vinPrefix, serial[:5], (hi*100+j)%1000000)
		ext = vin
		if t.brand == "Tesla" {
			ext = "tesla:" + vin
		}
		name = t.model
		attrs = []Attribute{{ID: "vinNumber", Value: vin}, {ID: "isOnline", Value: mix(k0, 9)%10 != 0}}
	case kindCharger:
		ext = "EH" + serial[:6]
		name = fmt.Sprintf("Charger %d", j+1)
		attrs = []Attribute{{ID: "serialNumber", Value: ext}, {ID: "firmware.version", Value: "2.5.1"}}
	default:
		ext = serial
		name = fmt.Sprintf("%s %d", roomNames[mix(k0, 10)%uint64(len(roomNames))], j+1)
		if k == kindBattery {
			name = fmt.Sprintf("Battery %d", j+1)
		} else if k == kindInverter {
			name = fmt.Sprintf("Solar %d", j+1)
		}
		attrs = []Attribute{{ID: "serialNumber", Value: serial}, {ID: "firmware.version", Value: fmt.Sprintf("1.%d.%d", mix(k0, 11)%20, mix(k0, 12)%10)}}
	}
	d := &device{
		id: id, uuid: uuid, externalID: ext,
		name: name, brand: t.brand, model: t.model,
		kind: k, spec: spec, homeIDs: []string{h.id},
		zone: h.zone, loc: h.loc,
		resolutions: append([]string{}, spec.resolutions...),
		retention:   spec.retention, pageSize: spec.pageSize,
		attributes: attrs,
		key:        hashString(g.seed, "device", id),
	}
	if d.resolutions == nil {
		d.resolutions = []string{}
	}
	return d
}

// HostileText is what Options.HostileNames puts into every name: an OSC 0
// retitle ended by BEL, a CSI 2J (clear screen), a C1 CSI and a right-to-left
// override that makes "gpj.exe" read "exe.jpg".
const HostileText = "\x1b]0;owned\x07\x1b[2J\u009b31m\u202egpj.exe"

// makeHostile rewrites the fixture's names with HostileText.
func (a *fixtureAccount) makeHostile() {
	a.owner.name = "Eve" + HostileText
	a.owner.email = "eve\u202e" + "moc.elpmaxe@" + "\x1b[2J"
	for _, h := range a.homeList {
		h.name += HostileText
	}
	for _, d := range a.devList {
		d.name += HostileText
		d.brand += "\x1b]8;;http://evil.example/\x07"
		d.model += "\u2066" + HostileText + "\u2069"
	}
}
