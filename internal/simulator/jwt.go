package simulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// accessClaims are the claims of a simulated access token (§11 #4).
type accessClaims struct {
	Iss      string   `json:"iss"`
	Sub      string   `json:"sub"`
	ClientID string   `json:"client_id"`
	Scope    []string `json:"scope"`
	Iat      int64    `json:"iat"`
	Nbf      int64    `json:"nbf"`
	Exp      int64    `json:"exp"`
	Jti      string   `json:"jti"`
	Sid      string   `json:"sid,omitempty"`
}

// idClaims are the claims of a simulated id token.
type idClaims struct {
	Iss      string `json:"iss"`
	Sub      string `json:"sub"`
	Aud      string `json:"aud"`
	Iat      int64  `json:"iat"`
	Exp      int64  `json:"exp"`
	AuthTime int64  `json:"auth_time"`
	Nonce    string `json:"nonce,omitempty"`
	Email    string `json:"email,omitempty"`
	Name     string `json:"name,omitempty"`
}

func (c accessClaims) has(scope string) bool {
	for _, s := range c.Scope {
		if s == scope {
			return true
		}
	}
	return false
}

var b64 = base64.RawURLEncoding

// signJWT builds an HS256 JWT with the given typ header.
func signJWT(key []byte, typ string, claims any) string {
	header, _ := json.Marshal(map[string]string{"alg": "HS256", "kid": "sim", "typ": typ})
	body, _ := json.Marshal(claims)
	unsigned := b64.EncodeToString(header) + "." + b64.EncodeToString(body)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(unsigned))
	return unsigned + "." + b64.EncodeToString(m.Sum(nil))
}

var (
	errTokenMalformed = errors.New("the access token is malformed")
	errTokenSignature = errors.New("the access token signature is invalid")
	errTokenExpired   = errors.New(`"exp" claim timestamp check failed`)
	errTokenType      = errors.New("the token is not an access token")
)

// verifyAccessToken checks signature, type and expiry of an access token.
func verifyAccessToken(key []byte, tok string, now time.Time) (accessClaims, error) {
	var c accessClaims
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return c, errTokenMalformed
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return c, errTokenMalformed
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, m.Sum(nil)) {
		return c, errTokenSignature
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return c, errTokenMalformed
	}
	var h struct {
		Alg, Typ string
	}
	if json.Unmarshal(hb, &h) != nil || h.Alg != "HS256" {
		return c, errTokenMalformed
	}
	if h.Typ != "at+jwt" {
		return c, errTokenType
	}
	cb, err := b64.DecodeString(parts[1])
	if err != nil || json.Unmarshal(cb, &c) != nil {
		return c, errTokenMalformed
	}
	if now.Unix() >= c.Exp {
		return c, errTokenExpired
	}
	return c, nil
}
