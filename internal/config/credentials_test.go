package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tibbersync/tibbersync/internal/config"
)

const canary = "CANARY-client-secret-7f3a"

func configWithSecretFile(t *testing.T, secretPath string) string {
	t.Helper()
	return writeFile(t, "config.toml", fmt.Sprintf("[tibber]\nclient_id = \"id\"\nclient_secret_file = %q\n", secretPath), 0o644)
}

func credentialsDir(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "client_secret"), []byte(content), 0o400); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSecretPrecedence(t *testing.T) {
	secretFile := writeFile(t, "secret", "from-file\n", 0o600)
	credDir := credentialsDir(t, "from-credentials\n")
	envSecret := config.SecretEnv + "=from-env"

	cases := map[string]struct {
		file       string
		environ    []string
		wantSecret string
		wantSource string
	}{
		"CredentialsWin":       {secretFile, []string{"CREDENTIALS_DIRECTORY=" + credDir, envSecret}, "from-credentials", config.SourceCredentials},
		"FileBeatsEnv":         {secretFile, []string{envSecret}, "from-file", config.SourceFile},
		"EnvLastResort":        {"", []string{envSecret}, "from-env", config.SourceEnvironment},
		"CredentialDirWithout": {secretFile, []string{"CREDENTIALS_DIRECTORY=" + t.TempDir()}, "from-file", config.SourceFile},
		"NoneIsNotAnError":     {"", nil, "", ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			path := configWithSecretFile(t, c.file)
			cfg, err := config.Load(path, c.environ)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := cfg.ClientSecret.Reveal(); got != c.wantSecret {
				t.Errorf("secret = %q, want %q", got, c.wantSecret)
			}
			if cfg.ClientSecretSource != c.wantSource {
				t.Errorf("source = %q, want %q", cfg.ClientSecretSource, c.wantSource)
			}
		})
	}
}

func TestSecretTrimsOneNewline(t *testing.T) {
	cases := map[string]string{
		"s3cret\n":   "s3cret",
		"s3cret\r\n": "s3cret",
		"s3cret\n\n": "s3cret\n",
		"s3cret":     "s3cret",
		" s3cret \n": " s3cret ",
	}
	for content, want := range cases {
		path := configWithSecretFile(t, writeFile(t, "secret", content, 0o600))
		cfg, err := config.Load(path, nil)
		if err != nil {
			t.Fatalf("%q: %v", content, err)
		}
		if got := cfg.ClientSecret.Reveal(); got != want {
			t.Errorf("%q: secret = %q, want %q", content, got, want)
		}
	}
}

func TestSecretFileProblems(t *testing.T) {
	dir := t.TempDir()
	notADir := writeFile(t, "plain", "x", 0o600)
	cases := map[string]struct {
		path string
		want string
	}{
		"GroupReadable": {writeFile(t, "secret", canary+"\n", 0o640), "mode 0640 lets group or others access it"},
		"WorldReadable": {writeFile(t, "secret", canary+"\n", 0o604), "mode 0604"},
		"Missing":       {filepath.Join(dir, "missing"), "does not exist"},
		"Directory":     {dir, "not a regular file"},
		"Unreachable":   {filepath.Join(notADir, "secret"), "bad client secret file"},
		"Empty":         {writeFile(t, "secret", "\n", 0o600), "empty"},
		"TooLarge":      {writeFile(t, "secret", strings.Repeat(canary, 5000), 0o600), "larger than 64 KiB"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			path := configWithSecretFile(t, c.path)
			_, err := config.Load(path, []string{config.SecretEnv + "=" + canary})
			ve := validationError(t, err)
			if len(ve.Fields) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(ve.Fields), err)
			}
			f := ve.Fields[0]
			if f.Key != "tibber.client_secret_file" || f.Value != c.path || !errors.Is(err, config.ErrSecretFile) {
				t.Errorf("got %+v, want ErrSecretFile on tibber.client_secret_file = %q", f, c.path)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q lacks %q", err, c.want)
			}
			if strings.Contains(err.Error(), canary) {
				t.Errorf("error contains the secret: %v", err)
			}
		})
	}
}

func TestSecretFileUnreadableAsUser(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file; the not-a-directory case in TestSecretFileProblems covers unreadable paths")
	}
	secret := writeFile(t, "secret", canary, 0o000)
	_, err := config.Load(configWithSecretFile(t, secret), nil)
	ve := validationError(t, err)
	if len(ve.Fields) != 1 || !strings.Contains(err.Error(), "not readable") || strings.Contains(err.Error(), canary) {
		t.Errorf("err = %v, want one not-readable error without the secret", err)
	}
}

func TestBrokenCredentialDoesNotFallThrough(t *testing.T) {
	credDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(credDir, "client_secret"), 0o700); err != nil {
		t.Fatal(err)
	}
	path := configWithSecretFile(t, writeFile(t, "secret", "from-file", 0o600))
	_, err := config.Load(path, []string{"CREDENTIALS_DIRECTORY=" + credDir})
	ve := validationError(t, err)
	if len(ve.Fields) != 1 || ve.Fields[0].Key != "$CREDENTIALS_DIRECTORY/client_secret" || !errors.Is(err, config.ErrSecretFile) {
		t.Errorf("err = %v, want one ErrSecretFile on the credential", err)
	}
}

func TestClientSecretInFileRejected(t *testing.T) {
	path := writeFile(t, "config.toml", "[tibber]\nclient_secret = \""+canary+"\"\n", 0o600)
	_, err := config.Load(path, nil)
	ve := validationError(t, err)
	if len(ve.Fields) != 1 || ve.Fields[0].Key != "tibber.client_secret" || !errors.Is(err, config.ErrSecretInConfig) {
		t.Fatalf("err = %v, want one ErrSecretInConfig on tibber.client_secret", err)
	}
	for _, s := range []string{"client_secret_file", "LoadCredential="} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %s", err, s)
		}
	}
}

// TestSecretNeverInErrors puts the canary everywhere a secret might be
// written by mistake and checks that no error repeats it.
func TestSecretNeverInErrors(t *testing.T) {
	files := map[string]string{
		"InFile":         "[tibber]\nclient_secret = \"" + canary + "\"\n",
		"MisspeltKey":    "[tibber]\nclient_secert = \"" + canary + "\"\n",
		"UnknownSection": "[secrets]\nclient_secret = \"" + canary + "\"\n",
		"BrokenSyntax":   "[tibber]\nclient_secret = \"" + canary + "\n",
		"BrokenSyntax2":  "[tibber]\nclient_secret = " + canary + "\n",
		"SectionValue":   "tibber = \"" + canary + "\"\n",
	}
	for name, content := range files {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, "config.toml", content, 0o600)
			_, err := config.Load(path, []string{config.SecretEnv + "=" + canary, "TIBBERSYNC_TIBBER_CLIENT_SECRT=" + canary})
			if err == nil {
				t.Fatal("Load accepted the file")
			}
			if strings.Contains(err.Error(), canary) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), canary) {
				t.Errorf("error contains the secret: %v", err)
			}
		})
	}
}
