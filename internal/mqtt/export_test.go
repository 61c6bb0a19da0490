package mqtt

// DeviceTopics reports how many device topics (states and discovery
// configs) p still tracks, and how many of those are deletes (empty
// payloads). Call it only after Run has returned: the Run goroutine owns
// these maps.
func DeviceTopics(p *Publisher) (tracked, deletes int) {
	for _, m := range p.devices {
		if len(m.payload) == 0 {
			deletes++
		}
	}
	return len(p.devices), deletes
}
