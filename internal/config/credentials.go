package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tibbersync/tibbersync/internal/logging"
)

// maxSecretBytes bounds a secret file; a client secret is a few dozen bytes,
// so anything larger is the wrong file (or /dev/zero).
const maxSecretBytes = 64 << 10

// resolveSecret sets cfg.ClientSecret and cfg.ClientSecretSource from, in
// order (reliability.md R11):
//
//  1. $CREDENTIALS_DIRECTORY/client_secret (systemd LoadCredential=), taken
//     from environ;
//  2. tibber.client_secret_file, which must be a regular file that neither
//     group nor others may access (mode & 0077 == 0);
//  3. TIBBERSYNC_TIBBER_CLIENT_SECRET, as a last resort.
//
// One trailing newline is trimmed. A source that exists but cannot be used
// is a FieldError; it never falls through to a weaker source. No secret at
// all is not an error here: the caller decides (setup may come later). No
// error ever contains the secret's bytes.
func resolveSecret(cfg *Config, environ []string, probs *problems) {
	if dir := lookupEnv(environ, "CREDENTIALS_DIRECTORY"); dir != "" {
		path := filepath.Join(dir, CredentialName)
		if _, err := os.Stat(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
			// systemd owns the credential's mode (0400 on a private
			// ramfs), so no mode check here.
			s, err := readSecretFile(path, false)
			if err != nil {
				probs.add("$CREDENTIALS_DIRECTORY/"+CredentialName, path, err)
				return
			}
			cfg.ClientSecret, cfg.ClientSecretSource = logging.NewSecret(s), SourceCredentials
			return
		}
	}
	if path := cfg.Tibber.ClientSecretFile; path != "" {
		s, err := readSecretFile(path, true)
		if err != nil {
			probs.add("tibber.client_secret_file", path, err)
			return
		}
		cfg.ClientSecret, cfg.ClientSecretSource = logging.NewSecret(s), SourceFile
		return
	}
	if s := trimNewline(lookupEnv(environ, SecretEnv)); s != "" {
		cfg.ClientSecret, cfg.ClientSecretSource = logging.NewSecret(s), SourceEnvironment
	}
}

// readSecretFile reads a secret file. Errors describe the file, never its
// content.
func readSecretFile(path string, checkMode bool) (string, error) {
	// Stat before opening: opening a FIFO would block.
	fi, err := os.Stat(path)
	if err != nil {
		return "", secretFileErr(err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%w: not a regular file", ErrSecretFile)
	}
	if perm := fi.Mode().Perm(); checkMode && perm&0o077 != 0 {
		return "", fmt.Errorf("%w: mode %04o lets group or others access it; run chmod 600", ErrSecretFile, perm)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", secretFileErr(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretBytes+1))
	if err != nil {
		return "", fmt.Errorf("%w: read: %w", ErrSecretFile, errWithoutPath(err))
	}
	if len(b) > maxSecretBytes {
		return "", fmt.Errorf("%w: larger than %d KiB, not a client secret", ErrSecretFile, maxSecretBytes>>10)
	}
	s := trimNewline(string(b))
	if s == "" {
		return "", fmt.Errorf("%w: empty", ErrSecretFile)
	}
	return s, nil
}

func secretFileErr(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: does not exist", ErrSecretFile)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: not readable by this user", ErrSecretFile)
	}
	return fmt.Errorf("%w: %w", ErrSecretFile, errWithoutPath(err))
}

// errWithoutPath drops the path from an *fs.PathError (FieldError.Value
// already names the file).
func errWithoutPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// trimNewline removes one trailing "\n" or "\r\n".
func trimNewline(s string) string {
	if t, ok := strings.CutSuffix(s, "\r\n"); ok {
		return t
	}
	return strings.TrimSuffix(s, "\n")
}

// lookupEnv returns the value of the last name=value entry in environ.
func lookupEnv(environ []string, name string) string {
	v := ""
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && k == name {
			v = val
		}
	}
	return v
}
