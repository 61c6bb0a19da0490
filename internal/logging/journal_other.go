//go:build !unix

package logging

import "io"

// underJournald is always false where there is no systemd.
func underJournald(io.Writer) bool { return false }
