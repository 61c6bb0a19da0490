package tibber

// The body decoders as functions of a reader, for the decoder tests and
// fuzzers. The client decodes bodies it has already read and limited
// (client.go); the product has no caller of these.

import (
	"fmt"
	"io"
	"net/url"

	"github.com/tibbersync/tibbersync/internal/model"
)

// DecodeHomes decodes a GET /v1/homes body: {"homes":[...]} or a bare array.
// Items without a usable string id, duplicates and non-objects are skipped.
// A body that is not JSON, or JSON of another shape, is an error. At most
// DefaultMaxBodyBytes are read from r.
func DecodeHomes(r io.Reader) ([]model.Home, error) {
	b, err := readLimited(r)
	if err != nil {
		return nil, err
	}
	homes, _, err := decodeHomes(b)
	return homes, err
}

// DecodeDevices decodes a GET /v1/homes/{homeId}/devices body:
// {"devices":[...]} or a bare array. List items carry identity only, so
// Capabilities stay nil and Category stays "" unless the item unexpectedly
// has capabilities. Items without a usable string id, duplicates and
// non-objects are skipped. At most DefaultMaxBodyBytes are read from r.
func DecodeDevices(r io.Reader) ([]model.Device, error) {
	b, err := readLimited(r)
	if err != nil {
		return nil, err
	}
	devices, _, err := decodeDevices(b)
	return devices, err
}

// DecodeDevice decodes a device detail body (the device object itself). Raw
// holds the body exactly as received, Category comes from the capability
// ids, and Capabilities is non-nil. A body without a usable id is an error.
// At most DefaultMaxBodyBytes are read from r.
func DecodeDevice(r io.Reader) (model.Device, error) {
	b, err := readLimited(r)
	if err != nil {
		return model.Device{}, err
	}
	return decodeDevice(b)
}

// DecodeHistoryPage decodes a history page. Item times keep the offset
// Tibber sent; data is flattened to dotted metric names. Items with a bad
// time and non-numeric leaves are skipped and listed in Problems (null leaves
// are holes and skipped silently). next/prev links are resolved against base
// and returned absolute; a link to another scheme, host or port is an error
// wrapping ErrForeignLink. At most DefaultMaxBodyBytes are read from r.
func DecodeHistoryPage(r io.Reader, base *url.URL) (model.HistoryPage, error) {
	b, err := readLimited(r)
	if err != nil {
		return model.HistoryPage{}, err
	}
	return decodeHistoryPage(b, base)
}

func readLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, DefaultMaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(b)) > DefaultMaxBodyBytes {
		return nil, fmt.Errorf("%w (over %d bytes)", ErrResponseTooLarge, DefaultMaxBodyBytes)
	}
	return b, nil
}
