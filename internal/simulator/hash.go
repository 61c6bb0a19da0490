package simulator

import (
	"hash/fnv"
	"math"
)

// splitmix64 is a fast, well-mixing 64-bit finaliser. Every simulated value
// is derived from it, so state and history are pure functions of the seed.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// hashString hashes the seed and parts into a key.
func hashString(seed int64, parts ...string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for i := range b {
		b[i] = byte(uint64(seed) >> (8 * i))
	}
	h.Write(b[:])
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return splitmix64(h.Sum64())
}

// mix combines a key with further values.
func mix(h uint64, vals ...uint64) uint64 {
	for _, v := range vals {
		h = splitmix64(h ^ splitmix64(v))
	}
	return h
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// Salts that separate the independent random streams of one device.
const (
	saltCloud uint64 = iota + 1
	saltNoise
	saltHole
	saltGap
	saltShift
	saltShuffle
	saltDrive
	saltEco
	saltNull
	saltSeen
	saltRSSI
)

// round rounds x to the given number of decimals.
func round(x float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(x*p) / p
}

func clamp(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }
