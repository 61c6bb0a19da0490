package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"

	"github.com/tibbersync/tibbersync/internal/logging"
)

// GenerateVerifier returns a fresh PKCE code verifier: 32 random bytes as 43
// base64url characters (RFC 7636 §4.1).
func GenerateVerifier() logging.Secret {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics instead)
	return logging.NewSecret(base64.RawURLEncoding.EncodeToString(b))
}

// S256Challenge returns the S256 code challenge of verifier:
// BASE64URL(SHA256(verifier)) without padding (RFC 7636 §4.2).
func S256Challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// newState returns a fresh one-time state: crypto/rand.Text, 26 base32
// characters carrying 130 random bits (R1 asks for at least 128).
func newState() logging.Secret {
	return logging.NewSecret(rand.Text())
}
