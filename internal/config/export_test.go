package config

// LoadSearch is Load with the search paths injected (and the built-in
// default storage directory), so that tests do not depend on
// /etc/tibbersync existing on the test machine.
func LoadSearch(path string, environ, search []string) (Config, error) {
	return load(path, environ, search, Default())
}
