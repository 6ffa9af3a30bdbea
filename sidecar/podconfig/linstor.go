package podconfig

import (
	lapi "github.com/LINBIT/golinstor/client"
)

// Linstor is how the sidecar reaches LINSTOR: golinstor's LS_* settings as
// one value, wherever they came from (the sidecar's own environment, or the
// LINSTOR CSI container through Discover). sidecar.NewLinstorClient builds
// every LINSTOR client of the program from it, so no setting is handed over
// through the process environment.
type Linstor struct {
	// Controllers is LS_CONTROLLERS: comma-separated URLs; empty means
	// golinstor's default (localhost).
	Controllers string
	// Username and Password are HTTP basic authentication.
	Username, Password string
	// RootCA, UserCertificate and UserKey are PEM content.
	RootCA, UserCertificate, UserKey string
	// RootCAFile, UserCertificateFile and UserKeyFile are paths; the client
	// certificate and key are read at each TLS handshake, so certificates
	// rotated on disk are picked up.
	RootCAFile, UserCertificateFile, UserKeyFile string
	// BearerTokenFile is a file holding a bearer token.
	BearerTokenFile string
}

// linstorVar is one of golinstor's LS_* variables and the field that holds it.
type linstorVar struct {
	name  string
	field func(*Linstor) *string
	// secret values are never logged, only their size.
	secret bool
	// content names the variable that carries a *_FILE variable's content,
	// for the files Discover reads from the other container's volumes.
	content string
}

// linstorVars is the one list of golinstor's LS_* variables (named by
// golinstor's own constants), in the order they are documented.
var linstorVars = []linstorVar{
	{name: lapi.ControllerUrlEnv, field: func(l *Linstor) *string { return &l.Controllers }},
	{name: lapi.UsernameEnv, field: func(l *Linstor) *string { return &l.Username }},
	{name: lapi.PasswordEnv, field: func(l *Linstor) *string { return &l.Password }, secret: true},
	{name: lapi.RootCAEnv, field: func(l *Linstor) *string { return &l.RootCA }, secret: true},
	{name: lapi.UserCertEnv, field: func(l *Linstor) *string { return &l.UserCertificate }, secret: true},
	{name: lapi.UserKeyEnv, field: func(l *Linstor) *string { return &l.UserKey }, secret: true},
	{name: lapi.RootCAFileEnv, field: func(l *Linstor) *string { return &l.RootCAFile }, content: lapi.RootCAEnv},
	{name: lapi.UserCertFileEnv, field: func(l *Linstor) *string { return &l.UserCertificateFile }, content: lapi.UserCertEnv},
	{name: lapi.UserKeyFileEnv, field: func(l *Linstor) *string { return &l.UserKeyFile }, content: lapi.UserKeyEnv},
	{name: lapi.BearerTokenFileEnv, field: func(l *Linstor) *string { return &l.BearerTokenFile }},
}

// LinstorEnv names golinstor's LS_* variables, for usage texts.
func LinstorEnv() []string {
	names := make([]string, len(linstorVars))
	for i, v := range linstorVars {
		names[i] = v.name
	}
	return names
}

func linstorVarNamed(name string) (linstorVar, bool) {
	for _, v := range linstorVars {
		if v.name == name {
			return v, true
		}
	}
	return linstorVar{}, false
}

func isLinstorEnv(name string) bool {
	_, ok := linstorVarNamed(name)
	return ok
}

// LinstorFrom collects the LS_* variables lookup knows (os.LookupEnv for
// the process environment). set is true when any of them has a value; an
// empty variable counts as not set.
func LinstorFrom(lookup func(name string) (string, bool)) (l Linstor, set bool) {
	for _, v := range linstorVars {
		if value, ok := lookup(v.name); ok && value != "" {
			*v.field(&l) = value
			set = true
		}
	}
	return l, set
}

// Linstor is the connection the CSI container uses.
func (s *Settings) Linstor() Linstor {
	l, _ := LinstorFrom(func(name string) (string, bool) {
		v, ok := s.Env[name]
		return v.Value, ok
	})
	return l
}

// Get returns the value of the LS_* variable name ("" for other names).
func (l Linstor) Get(name string) string {
	if v, ok := linstorVarNamed(name); ok {
		return *v.field(&l)
	}
	return ""
}

// TLS reports whether any TLS setting is given: golinstor then speaks https
// to a controller given without a scheme.
func (l Linstor) TLS() bool {
	return l.RootCA != "" || l.RootCAFile != "" || l.UserCertificate != "" || l.UserCertificateFile != "" ||
		l.UserKey != "" || l.UserKeyFile != ""
}
