package logging

import "github.com/tibbersync/tibbersync/internal/secret"

// Redacted is what every formatting of a Secret prints.
const Redacted = secret.Redacted

// Secret is secret.Secret, named here because the logging rules (redaction
// by type in every handler) are built around it.
type Secret = secret.Secret

// NewSecret wraps s.
func NewSecret(s string) Secret { return secret.New(s) }
