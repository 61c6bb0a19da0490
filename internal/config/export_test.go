package config

// LoadSearch is Load with the default search paths injected, so that tests
// do not depend on /etc/tibbersync existing on the test machine.
var LoadSearch = load
