package csifake

// Method names one CSI call the fake serves. It keys the per-method delay,
// injected error, call counter and last request, so a test can steer and
// observe exactly the call it is about.
type Method string

// The CSI calls the fake serves.
const (
	GetPluginInfo             Method = "GetPluginInfo"
	GetPluginCapabilities     Method = "GetPluginCapabilities"
	Probe                     Method = "Probe"
	ControllerGetCapabilities Method = "ControllerGetCapabilities"
	ControllerGetVolume       Method = "ControllerGetVolume"
	GetCapacity               Method = "GetCapacity"
)

// Methods lists every Method the fake serves, for tests that loop over all.
var Methods = []Method{
	GetPluginInfo,
	GetPluginCapabilities,
	Probe,
	ControllerGetCapabilities,
	ControllerGetVolume,
	GetCapacity,
}
