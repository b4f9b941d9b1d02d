package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
	"github.com/negotiate-sidecar/negotiate-sidecar/cmd/internal/cli"
	"github.com/negotiate-sidecar/negotiate-sidecar/proxy"
)

// fakeAccessKey is the AccessKey of the connection strings in testdata:
// base64 of "fake-key-for-tests".
const fakeAccessKey = "ZmFrZS1rZXktZm9yLXRlc3Rz"

// fakeConnectionString is a well-formed connection string with a fake key.
const fakeConnectionString = "Endpoint=https://fake.service.signalr.net;AccessKey=" + fakeAccessKey + ";Version=1.0;"

// loadArgs calls loadSettings as run does, with env as the whole environment.
func loadArgs(t *testing.T, env map[string]string, args ...string) (settings, error) {
	t.Helper()
	return loadSettings(args, newEnvironment(environ(env)), false)
}

// mustLoadArgs is loadArgs for configurations that must be valid.
func mustLoadArgs(t *testing.T, env map[string]string, args ...string) settings {
	t.Helper()
	s, err := loadArgs(t, env, args...)
	if err != nil {
		t.Fatalf("loadSettings(%q): %v", args, err)
	}
	return s
}

// errString is err's message, or "" for nil, so that a test table can
// spell out "no error" as "".
func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestLoadSettingsValidFull(t *testing.T) {
	got := mustLoadArgs(t, nil, "--config", "testdata/valid-full.yml")
	want := settings{
		Listen:           "127.0.0.1:8081",
		AdminListen:      "127.0.0.1:9091",
		Upstream:         "http://127.0.0.1:7071",
		Service:          "signalr",
		NegotiatePaths:   []string{"/api/negotiate", "/api/*/negotiate"},
		MaxBodyBytes:     131072,
		NegotiateTimeout: 10 * time.Second,
		LogLevel:         "debug",
		LogFormat:        "console",
		ShutdownDelay:    7 * time.Second,
		ShutdownTimeout:  25 * time.Second,
		MaxConnections:   100,
		ReloadInterval:   5 * time.Second,
		TokenCacheSize:   1000,
		Providers: []providerSettings{
			{
				Name:            "entra",
				Issuer:          "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0",
				JWKSURLs:        []string{"https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/discovery/v2.0/keys"},
				Audiences:       []string{"api://chat", "11111111-1111-1111-1111-111111111111"},
				Algorithms:      []string{"RS256", "PS256"},
				UserClaim:       "oid",
				Leeway:          time.Minute,
				RefreshInterval: 30 * time.Minute,
				MaxStaleness:    2 * time.Hour,
			},
			{
				Name:      "offline",
				Issuer:    "https://idp.example.test/",
				JWKSFile:  "testdata/jwks.json",
				Audiences: []string{"chat"},
				// Not in the file: the defaults.
				Algorithms:      auth.DefaultAlgorithms(),
				UserClaim:       "ext.user.id",
				Leeway:          0, // given as 0s, not defaulted to 30s
				RefreshInterval: 15 * time.Minute,
			},
			{
				Name:            "in-cluster",
				Issuer:          "http://keycloak.auth.svc.cluster.local/realms/chat",
				Audiences:       []string{"chat"},
				Algorithms:      auth.DefaultAlgorithms(),
				UserClaim:       "sub",
				Leeway:          30 * time.Second,
				RefreshInterval: 15 * time.Minute,
				InsecureHTTP:    true,
			},
		},
		SignalR: signalRSettings{
			ConnectionStrings:     []string{"Endpoint=https://fake-east.service.signalr.net;AccessKey=" + fakeAccessKey + ";Version=1.0;"},
			ConnectionStringFiles: []string{"testdata/connection-string-secondary.txt"},
		},
		Tokens: tokenSettings{
			ForwardClaims:       []string{"email", "roles"},
			MaxTokenLifetime:    time.Hour,
			BindToCallerExpiry:  true,
			CloseOnCallerExpiry: true,
			MaxTokenLength:      3000,
		},
		configFile: "testdata/valid-full.yml",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("settings from valid-full.yml:\n got %+v\nwant %+v", got, want)
		for i := range min(len(got.Providers), len(want.Providers)) {
			if !reflect.DeepEqual(got.Providers[i], want.Providers[i]) {
				t.Errorf("provider %d:\n got %+v (leeway %v)\nwant %+v (leeway %v)", i, got.Providers[i], got.Providers[i].Leeway, want.Providers[i], want.Providers[i].Leeway)
			}
		}
	}

	// The inline connection string and the file hold the primary and
	// secondary key of one endpoint: one endpoint, two keys.
	eps, err := endpoints(got, environment{})
	if err != nil {
		t.Fatal(err)
	}
	want1 := []string{"fake-east.service.signalr.net (2 key(s) from connection string 1 of the configuration, testdata/connection-string-secondary.txt)"}
	if got := endpointSummary(eps); !slices.Equal(got, want1) {
		t.Errorf("endpoints %q, want %q", got, want1)
	}
}

// TestTestdataConnectionStringsAreFake keeps real keys out of the fixtures:
// every AccessKey in testdata must be one of the known fake ones.
func TestTestdataConnectionStringsAreFake(t *testing.T) {
	fake := []string{fakeAccessKey, "ZmFrZS1zZWNvbmRhcnkta2V5LWZvci10ZXN0cw=="}
	files, _ := filepath.Glob("testdata/*")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // a directory
		}
		for _, part := range strings.FieldsFunc(string(data), func(r rune) bool { return r == ';' || r == '\n' || r == ' ' }) {
			if k, ok := strings.CutPrefix(part, "AccessKey="); ok && !slices.Contains(fake, k) {
				t.Errorf("%s: AccessKey %q is not one of the fake test keys", f, k)
			}
		}
	}
}

func TestLoadSettingsDefaults(t *testing.T) {
	flags := []string{"--upstream", "http://127.0.0.1:7071", "--issuer", "https://idp.example.test/", "--audience", "chat", "--connection-string", fakeConnectionString}
	want := settings{
		Listen:           ":8080",
		AdminListen:      ":9090",
		Upstream:         "http://127.0.0.1:7071",
		Service:          "signalr",
		MaxBodyBytes:     proxy.DefaultMaxBodyBytes,
		NegotiateTimeout: proxy.DefaultNegotiateTimeout,
		LogLevel:         "info",
		LogFormat:        "json",
		ShutdownDelay:    5 * time.Second,
		ShutdownTimeout:  15 * time.Second,
		MaxConnections:   2048,
		ReloadInterval:   2 * time.Second,
		TokenCacheSize:   4096,
		Providers: []providerSettings{{
			Name:            "idp.example.test", // the issuer's host
			Issuer:          "https://idp.example.test/",
			Audiences:       []string{"chat"},
			Algorithms:      auth.DefaultAlgorithms(),
			UserClaim:       "sub",
			Leeway:          30 * time.Second,
			RefreshInterval: 15 * time.Minute,
		}},
		SignalR: signalRSettings{ConnectionStrings: []string{fakeConnectionString}},
	}
	t.Run("flags only", func(t *testing.T) {
		if got := mustLoadArgs(t, nil, flags...); !reflect.DeepEqual(got, want) {
			t.Errorf("\n got %+v\nwant %+v", got, want)
		}
	})
	t.Run("empty file", func(t *testing.T) {
		want := want
		want.configFile = "testdata/valid-empty.yml"
		if got := mustLoadArgs(t, nil, append([]string{"--config", "testdata/valid-empty.yml"}, flags...)...); !reflect.DeepEqual(got, want) {
			t.Errorf("\n got %+v\nwant %+v", got, want)
		}
	})
	t.Run("environment only", func(t *testing.T) {
		env := map[string]string{
			"NEGOTIATE_SIDECAR_UPSTREAM":          "http://127.0.0.1:7071",
			"NEGOTIATE_SIDECAR_ISSUER":            "https://idp.example.test/",
			"NEGOTIATE_SIDECAR_AUDIENCE":          "chat",
			"NEGOTIATE_SIDECAR_CONNECTION_STRING": fakeConnectionString,
		}
		if got := mustLoadArgs(t, env); !reflect.DeepEqual(got, want) {
			t.Errorf("\n got %+v\nwant %+v", got, want)
		}
	})
}

// TestLoadSettingsPrecedence checks defaults < file < NEGOTIATE_SIDECAR_*
// variables < flags, one setting at a time.
func TestLoadSettingsPrecedence(t *testing.T) {
	const file = "testdata/valid-full.yml" // log_level debug, listen 127.0.0.1:8081, shutdown_timeout 25s
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(settings) (got, want any)
	}{
		{
			name:  "default",
			args:  []string{"--config", "testdata/valid-minimal.yml"},
			check: func(s settings) (any, any) { return s.LogLevel, "info" },
		},
		{
			name:  "file over default",
			args:  []string{"--config", file},
			check: func(s settings) (any, any) { return s.LogLevel, "debug" },
		},
		{
			name:  "environment over file",
			env:   map[string]string{"NEGOTIATE_SIDECAR_LOG_LEVEL": "warn"},
			args:  []string{"--config", file},
			check: func(s settings) (any, any) { return s.LogLevel, "warn" },
		},
		{
			name:  "flag over environment and file",
			env:   map[string]string{"NEGOTIATE_SIDECAR_LOG_LEVEL": "warn"},
			args:  []string{"--config", file, "--log-level", "error"},
			check: func(s settings) (any, any) { return s.LogLevel, "error" },
		},
		{
			name:  "flag over file",
			args:  []string{"--config", file, "--log-level", "error"},
			check: func(s settings) (any, any) { return s.LogLevel, "error" },
		},
		{
			name:  "empty variable is not set",
			env:   map[string]string{"NEGOTIATE_SIDECAR_LOG_LEVEL": ""},
			args:  []string{"--config", file},
			check: func(s settings) (any, any) { return s.LogLevel, "debug" },
		},
		{
			name:  "flag equal to the default still overrides the file",
			args:  []string{"--config", file, "--listen", ":8080"},
			check: func(s settings) (any, any) { return s.Listen, ":8080" },
		},
		{
			name:  "duration from environment",
			env:   map[string]string{"NEGOTIATE_SIDECAR_SHUTDOWN_TIMEOUT": "40s"},
			args:  []string{"--config", file},
			check: func(s settings) (any, any) { return s.ShutdownTimeout, 40 * time.Second },
		},
		{
			name:  "shutdown delay from environment over file",
			env:   map[string]string{"NEGOTIATE_SIDECAR_SHUTDOWN_DELAY": "20s"},
			args:  []string{"--config", file},
			check: func(s settings) (any, any) { return s.ShutdownDelay, 20 * time.Second },
		},
		{
			name:  "a shutdown delay of 0 is a choice",
			args:  []string{"--config", file, "--shutdown-delay", "0s"},
			check: func(s settings) (any, any) { return s.ShutdownDelay, time.Duration(0) },
		},
		{
			name:  "max connections from environment over file",
			env:   map[string]string{"NEGOTIATE_SIDECAR_MAX_CONNECTIONS": "5000"},
			args:  []string{"--config", file},
			check: func(s settings) (any, any) { return s.MaxConnections, 5000 },
		},
		{
			name:  "max connections flag over environment",
			env:   map[string]string{"NEGOTIATE_SIDECAR_MAX_CONNECTIONS": "5000"},
			args:  []string{"--config", file, "--max-connections", "10"},
			check: func(s settings) (any, any) { return s.MaxConnections, 10 },
		},
		{
			name:  "boolean from environment over file",
			env:   map[string]string{"NEGOTIATE_SIDECAR_CLOSE_ON_CALLER_EXPIRY": "false"},
			args:  []string{"--config", file},
			check: func(s settings) (any, any) { return s.Tokens.CloseOnCallerExpiry, false },
		},
		{
			name:  "configuration file from environment",
			env:   map[string]string{"NEGOTIATE_SIDECAR_CONFIG": file},
			check: func(s settings) (any, any) { return s.configFile + " " + s.LogLevel, file + " debug" },
		},
		{
			name:  "negotiate paths: flag replaces the file's list",
			args:  []string{"--config", file, "--negotiate-path", "/hub/negotiate"},
			check: func(s settings) (any, any) { return s.NegotiatePaths, []string{"/hub/negotiate"} },
		},
		{
			name:  "forward claims: environment replaces the file's list",
			env:   map[string]string{"NEGOTIATE_SIDECAR_FORWARD_CLAIM": "name"},
			args:  []string{"--config", file},
			check: func(s settings) (any, any) { return s.Tokens.ForwardClaims, []string{"name"} },
		},
		{
			name: "connection strings: flag adds to the file's",
			args: []string{"--config", file, "--connection-string", fakeConnectionString},
			check: func(s settings) (any, any) {
				return s.SignalR.ConnectionStrings, []string{"Endpoint=https://fake-east.service.signalr.net;AccessKey=" + fakeAccessKey + ";Version=1.0;", fakeConnectionString}
			},
		},
		{
			name: "connection string files: environment adds to the file's",
			env:  map[string]string{"NEGOTIATE_SIDECAR_CONNECTION_STRING_FILE": "testdata/connection-string-secondary.txt"},
			args: []string{"--config", file},
			check: func(s settings) (any, any) {
				return s.SignalR.ConnectionStringFiles, []string{"testdata/connection-string-secondary.txt", "testdata/connection-string-secondary.txt"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustLoadArgs(t, tt.env, tt.args...)
			if got, want := tt.check(s); !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

// TestLoadSettingsListsFromEnvironment checks that a repeatable flag takes
// a comma-separated list from its variable, and that the flag, when given,
// replaces the variable's list rather than adding to it.
func TestLoadSettingsListsFromEnvironment(t *testing.T) {
	env := map[string]string{
		"NEGOTIATE_SIDECAR_UPSTREAM":               "http://127.0.0.1:7071",
		"NEGOTIATE_SIDECAR_ISSUER":                 "https://idp.example.test/",
		"NEGOTIATE_SIDECAR_AUDIENCE":               "api://chat, chat ,,",
		"NEGOTIATE_SIDECAR_JWKS_URL":               "https://idp.example.test/keys,https://idp.example.test/keys2",
		"NEGOTIATE_SIDECAR_ALGORITHMS":             "RS256, ES256",
		"NEGOTIATE_SIDECAR_NEGOTIATE_PATH":         "/api/negotiate,/hub/*/negotiate",
		"NEGOTIATE_SIDECAR_FORWARD_CLAIM":          "email,roles",
		"NEGOTIATE_SIDECAR_CONNECTION_STRING_FILE": "testdata/connection-string-secondary.txt",
	}
	s := mustLoadArgs(t, env)
	p := s.Providers[0]
	for _, c := range []struct {
		name      string
		got, want []string
	}{
		{"audiences", p.Audiences, []string{"api://chat", "chat"}},
		{"JWKS URLs", p.JWKSURLs, []string{"https://idp.example.test/keys", "https://idp.example.test/keys2"}},
		{"algorithms", p.Algorithms, []string{"RS256", "ES256"}},
		{"negotiate paths", s.NegotiatePaths, []string{"/api/negotiate", "/hub/*/negotiate"}},
		{"forward claims", s.Tokens.ForwardClaims, []string{"email", "roles"}},
		{"connection string files", s.SignalR.ConnectionStringFiles, []string{"testdata/connection-string-secondary.txt"}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}

	s = mustLoadArgs(t, env, "--audience", "one", "--audience", "two", "--algorithms", "PS256")
	if got := s.Providers[0].Audiences; !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("audiences with --audience given twice = %q, want [one two]", got)
	}
	if got := s.Providers[0].Algorithms; !slices.Equal(got, []string{"PS256"}) {
		t.Errorf("algorithms with --algorithms given = %q, want [PS256]", got)
	}
}

func TestLoadSettingsProviderFlagsOverrideTheFileProvider(t *testing.T) {
	const file = "testdata/valid-single-provider.yml"
	fromFile := providerSettings{
		Name:            "corp",
		Issuer:          "https://idp.example.test/",
		JWKSURLs:        []string{"https://idp.example.test/keys"},
		Audiences:       []string{"chat"},
		Algorithms:      []string{"ES256"},
		UserClaim:       "email",
		Leeway:          10 * time.Second,
		RefreshInterval: 5 * time.Minute,
		MaxStaleness:    time.Hour,
	}
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		change func(p *providerSettings)
	}{
		{"no provider flags", nil, nil, func(*providerSettings) {}},
		{"flags", nil,
			[]string{"--audience", "api://chat", "--user-claim", "oid", "--leeway", "0s", "--jwks-refresh-interval", "1h", "--max-staleness", "3h"},
			func(p *providerSettings) {
				p.Audiences = []string{"api://chat"}
				p.UserClaim = "oid"
				p.Leeway = 0
				p.RefreshInterval = time.Hour
				p.MaxStaleness = 3 * time.Hour
			}},
		{"issuer, JWKS and algorithms", nil,
			[]string{"--issuer", "https://other.example.test/", "--jwks-url", "https://other.example.test/jwks", "--algorithms", "RS256,PS256"},
			func(p *providerSettings) {
				p.Issuer = "https://other.example.test/" // the name stays "corp"
				p.JWKSURLs = []string{"https://other.example.test/jwks"}
				p.Algorithms = []string{"RS256", "PS256"}
			}},
		{"environment", map[string]string{"NEGOTIATE_SIDECAR_AUDIENCE": "a,b", "NEGOTIATE_SIDECAR_LEEWAY": "1m"}, nil,
			func(p *providerSettings) {
				p.Audiences = []string{"a", "b"}
				p.Leeway = time.Minute
			}},
		{"flag over environment", map[string]string{"NEGOTIATE_SIDECAR_USER_CLAIM": "upn"}, []string{"--user-claim", "oid"},
			func(p *providerSettings) { p.UserClaim = "oid" }},
		{"insecure http flag", nil, []string{"--insecure-http"},
			func(p *providerSettings) { p.InsecureHTTP = true }},
		{"insecure http from environment", map[string]string{"NEGOTIATE_SIDECAR_INSECURE_HTTP": "true"}, nil,
			func(p *providerSettings) { p.InsecureHTTP = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustLoadArgs(t, tt.env, append([]string{"--config", file}, tt.args...)...)
			want := fromFile
			tt.change(&want)
			if len(s.Providers) != 1 {
				t.Fatalf("%d providers, want 1", len(s.Providers))
			}
			if got := s.Providers[0]; !reflect.DeepEqual(got, want) {
				t.Errorf("\n got %+v (leeway %v)\nwant %+v (leeway %v)", got, got.Leeway, want, want.Leeway)
			}
			// Settings outside the provider are the file's.
			if s.LogLevel != "debug" || !slices.Equal(s.Tokens.ForwardClaims, []string{"email"}) {
				t.Errorf("log level %q, forward claims %q: the file's settings were lost", s.LogLevel, s.Tokens.ForwardClaims)
			}
		})
	}
}

func TestLoadSettingsProviderFlagsWithSeveralFileProviders(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{
			name: "flags",
			args: []string{"--audience", "chat", "--issuer", "https://idp.example.test/"},
			want: "--audience, --issuer (flags or NEGOTIATE_SIDECAR_* variables) describe a single identity provider, but the configuration file lists 3; set them in the file instead",
		},
		{
			name: "environment",
			env:  map[string]string{"NEGOTIATE_SIDECAR_JWKS_URL": "https://idp.example.test/keys"},
			want: "NEGOTIATE_SIDECAR_JWKS_URL (flags or NEGOTIATE_SIDECAR_* variables) describe a single identity provider, but the configuration file lists 3; set them in the file instead",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadArgs(t, tt.env, append([]string{"--config", "testdata/valid-full.yml"}, tt.args...)...)
			if got := errString(err); got != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// TestLoadSettingsPlainHTTP: keys are fetched over https, or plain http to
// loopback, unless the provider allows plain http; an issuer used for
// discovery must be a URL, and is refused at start rather than leaving the
// sidecar unready for ever.
func TestLoadSettingsPlainHTTP(t *testing.T) {
	const todo = " uses plain http to a host that is not loopback; use https, or set insecure_http: true (--insecure-http) for an identity provider inside the cluster"
	base := []string{"--upstream", "http://127.0.0.1:7071", "--audience", "chat", "--connection-string", fakeConnectionString}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // "" accepted
	}{
		{"https issuer", nil, []string{"--issuer", "https://idp.example.test/"}, ""},
		{"http issuer", nil, []string{"--issuer", "http://idp.example.test/"},
			`provider "idp.example.test": issuer "http://idp.example.test/", from which OpenID Connect discovery finds the keys (no JWKS URL is given),` + todo},
		{"http issuer allowed by flag", nil, []string{"--issuer", "http://idp.example.test/", "--insecure-http"}, ""},
		{"http issuer on loopback", nil, []string{"--issuer", "http://127.0.0.1:5556/dex"}, ""},
		{"http issuer on localhost", nil, []string{"--issuer", "http://localhost:5556/dex"}, ""},
		{"http JWKS URL", nil, []string{"--issuer", "https://idp.example.test/", "--jwks-url", "http://10.0.0.7/keys"},
			`provider "idp.example.test": JWKS URL "http://10.0.0.7/keys"` + todo},
		{"http JWKS URL allowed by the environment", map[string]string{"NEGOTIATE_SIDECAR_INSECURE_HTTP": "true"}, []string{"--issuer", "https://idp.example.test/", "--jwks-url", "http://10.0.0.7/keys"}, ""},
		{"http JWKS URL, environment overridden by flag", map[string]string{"NEGOTIATE_SIDECAR_INSECURE_HTTP": "true"}, []string{"--issuer", "https://idp.example.test/", "--jwks-url", "http://10.0.0.7/keys", "--insecure-http=false"},
			`provider "idp.example.test": JWKS URL "http://10.0.0.7/keys"` + todo},
		{"issuer not a URL, for discovery", nil, []string{"--issuer", "corp-idp"},
			`provider "provider-1": issuer "corp-idp", from which OpenID Connect discovery finds the keys (no JWKS URL is given), must be an absolute http or https URL`},
		{"issuer not a URL, with a JWKS URL", nil, []string{"--issuer", "corp-idp", "--jwks-url", "https://idp.example.test/keys"}, ""},
		{"issuer not a URL, with a JWKS file", nil, []string{"--issuer", "corp-idp", "--jwks-file", "testdata/jwks.json"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadArgs(t, tt.env, append(base, tt.args...)...)
			if got := errString(err); got != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// TestLoadSettingsInvalidFiles checks the exact error for each invalid file,
// as blackbox_exporter does: the message is the user interface here.
func TestLoadSettingsInvalidFiles(t *testing.T) {
	tests := map[string]string{
		"invalid-algorithms.yml":                       "testdata/invalid-algorithms.yml line 5: algorithms \"RS256,none,HS256\": \"none\" and \"HS256\" not accepted; choose from RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,ES512,EdDSA (never none or HS*)",
		"invalid-audience-singular.yml":                "testdata/invalid-audience-singular.yml line 4: unknown key \"audience\" (did you mean audiences?); see the configuration reference in the README for the keys there are\nproviders[0].audiences: at least one audience is required: the aud your callers' tokens carry",
		"invalid-close-without-bind.yml":               "closing connections on caller expiry requires binding the token to the caller's expiry",
		"invalid-connection-string.yml":                "connection string 1 of the configuration: connection string: missing Endpoint (expected Endpoint=https://<name>.service.signalr.net;AccessKey=...)",
		"invalid-duplicate-default-provider-names.yml": "provider \"login.microsoftonline.com\": the name is used twice; give each provider its own name (names label metrics and must differ)",
		"invalid-duplicate-issuers.yml":                "provider \"corp-b\": issuer \"https://idp.example.test/\" is configured twice; a token must map to exactly one provider, so merge their audiences into one",
		"invalid-duplicate-provider-names.yml":         "provider \"corp\": the name is used twice; give each provider its own name (names label metrics and must differ)",
		"invalid-duration-without-unit.yml":            "testdata/invalid-duration-without-unit.yml line 2: shutdown_timeout \"30\": not a duration; use a duration such as 30s, 5m or 1h",
		"invalid-duration.yml":                         "testdata/invalid-duration.yml line 5: leeway \"30 seconds\": not a duration; use a duration such as 30s, 5m or 1h",
		"invalid-empty-audience.yml":                   "testdata/invalid-empty-audience.yml line 4: audiences \"\": an audience is empty; list the aud values your callers' tokens carry",
		"invalid-forward-claims.yml":                   "a forward claim name is empty",
		"invalid-http-issuer.yml":                      "provider \"idp.example.test\": issuer \"http://idp.example.test/\", from which OpenID Connect discovery finds the keys (no JWKS URL is given), uses plain http to a host that is not loopback; use https, or set insecure_http: true (--insecure-http) for an identity provider inside the cluster",
		"invalid-http-jwks-url.yml":                    "provider \"idp.example.test\": JWKS URL \"http://idp.example.test/keys\" uses plain http to a host that is not loopback; use https, or set insecure_http: true (--insecure-http) for an identity provider inside the cluster",
		"invalid-issuer-not-url.yml":                   "provider \"corp\": issuer \"corp-idp\", from which OpenID Connect discovery finds the keys (no JWKS URL is given), must be an absolute http or https URL",
		"invalid-jwks-url.yml":                         "provider \"idp.example.test\": JWKS URL \"idp.example.test/keys\" must be an absolute http or https URL",
		"invalid-leeway.yml":                           "testdata/invalid-leeway.yml line 5: leeway \"10m\": choose a value from 0s to 5m",
		"invalid-log.yml":                              "testdata/invalid-log.yml line 2: log_level \"verbose\": choose debug, info, warn or error\ntestdata/invalid-log.yml line 3: log_format \"text\": choose json or console",
		"invalid-many.yml":                             "testdata/invalid-many.yml line 12: unknown key \"audience\" (did you mean audiences?); see the configuration reference in the README for the keys there are\ntestdata/invalid-many.yml line 2: upstream \"127.0.0.1:7071\": must be an absolute http or https URL, such as http://127.0.0.1:80\ntestdata/invalid-many.yml line 3: service \"pubsub\": choose signalr or webpubsub\ntestdata/invalid-many.yml line 4: log_format \"text\": choose json or console\nproviders[1].issuer: an issuer is required: the exact iss claim of your callers' tokens\nproviders[1].audiences: at least one audience is required: the aud your callers' tokens carry\ntestdata/invalid-many.yml line 9: algorithms \"none\": \"none\" not accepted; choose from RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,ES512,EdDSA (never none or HS*)\ntestdata/invalid-many.yml line 10: leeway \"1h\": choose a value from 0s to 5m\nprovider \"corp\": give an issuer for discovery, a JWKS URL or a JWKS file\nprovider \"corp\": the name is used twice; give each provider its own name (names label metrics and must differ)\nconnection string 1 of the configuration: AuthType=azure.app needs ClientId, TenantId and ClientSecret or ClientCert (the path of a PEM certificate with its private key)",
		"invalid-max-body-bytes-type.yml":              "testdata/invalid-max-body-bytes-type.yml line 2: max_body_bytes \"64KiB\": not a whole number; use digits only, such as 4096",
		"invalid-max-body-bytes.yml":                   "testdata/invalid-max-body-bytes.yml line 2: max_body_bytes \"100\": choose from 1024 to 16777216",
		"invalid-max-staleness-default-refresh.yml":    "testdata/invalid-max-staleness-default-refresh.yml line 6: max_staleness \"20m\": must be 0 (never) or at least twice the refresh interval (15m0s)",
		"invalid-max-staleness.yml":                    "testdata/invalid-max-staleness.yml line 6: max_staleness \"15m\": must be 0 (never) or at least twice the refresh interval (10m0s)",
		"invalid-max-token-length.yml":                 "the maximum token length 8192 is above the 4096 characters the signalr service accepts",
		"invalid-missing-issuer.yml":                   "providers[0].issuer: an issuer is required: the exact iss claim of your callers' tokens",
		"invalid-missing-upstream.yml":                 "upstream: required: the app's address in the pod, such as http://127.0.0.1:80 (--upstream, or upstream: in the file)",
		"invalid-negative-leeway.yml":                  "testdata/invalid-negative-leeway.yml line 5: leeway \"-1s\": choose a value from 0s to 5m",
		"invalid-negotiate-path.yml":                   "testdata/invalid-negotiate-path.yml line 2: negotiate_paths \"api/negotiate\": negotiate path \"api/negotiate\" must start with /",
		"invalid-negotiate-pattern.yml":                "testdata/invalid-negotiate-pattern.yml line 2: negotiate_paths \"/api/[/negotiate\": negotiate path \"/api/[/negotiate\": syntax error in pattern",
		"invalid-no-providers.yml":                     "no identity provider: give --issuer and --audience, or list providers: in the configuration file",
		"invalid-refresh-interval.yml":                 "testdata/invalid-refresh-interval.yml line 5: refresh_interval \"30s\": choose at least 1m0s",
		"invalid-service.yml":                          "testdata/invalid-service.yml line 2: service \"pubsub\": choose signalr or webpubsub",
		"invalid-timeouts.yml":                         "testdata/invalid-timeouts.yml line 4: max_connections \"0\": choose from 1 to 1048576\ntestdata/invalid-timeouts.yml line 2: shutdown_delay \"-1s\": choose at least 0s\ntestdata/invalid-timeouts.yml line 3: shutdown_timeout \"0s\": must be positive\ntestdata/invalid-timeouts.yml line 5: reload_interval \"10ms\": choose at least 100ms\nthe maximum token lifetime -1m0s is negative",
		"invalid-token-cache-size.yml":                 "testdata/invalid-token-cache-size.yml line 2: token_cache_size \"-1\": choose from 0 to 1000000",
		"invalid-two-documents.yml":                    "testdata/invalid-two-documents.yml: holds more than one YAML document; keep the configuration in one",
		"invalid-unknown-key.yml":                      "testdata/invalid-unknown-key.yml line 2: unknown key \"upstreams\" (did you mean upstream?); see the configuration reference in the README for the keys there are",
		"invalid-unknown-provider-key.yml":             "testdata/invalid-unknown-provider-key.yml line 5: unknown key \"jwks_url\" (did you mean jwks_urls?); see the configuration reference in the README for the keys there are",
		"invalid-unknown-signalr-key.yml":              "testdata/invalid-unknown-signalr-key.yml line 6: unknown key \"connection_string\" (did you mean connection_strings?); see the configuration reference in the README for the keys there are\nno connection string: set AzureSignalRConnectionString (the app's own setting), --connection-string or --connection-string-file",
		"invalid-unknown-tokens-key.yml":               "testdata/invalid-unknown-tokens-key.yml line 10: unknown key \"close_on_expiry\"; see the configuration reference in the README for the keys there are",
		"invalid-upstream.yml":                         "testdata/invalid-upstream.yml line 1: upstream \"127.0.0.1:7071\": must be an absolute http or https URL, such as http://127.0.0.1:80",
	}

	// Every invalid file has an expected error, so none is left untested.
	files, err := filepath.Glob("testdata/invalid-*.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := tests[filepath.Base(f)]; !ok && !slices.Contains(invalidFilesTestedElsewhere, filepath.Base(f)) {
			t.Errorf("%s has no expected error in this test", f)
		}
	}

	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := loadArgs(t, nil, "--config", filepath.Join("testdata", name))
			if err == nil {
				t.Fatal("no error")
			}
			if got := err.Error(); got != want {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
			if strings.Contains(err.Error(), fakeAccessKey) {
				t.Error("the error shows the access key")
			}
		})
	}
}

// invalidFilesTestedElsewhere are invalid files with tests of their own below.
var invalidFilesTestedElsewhere = []string{"invalid-syntax.yml", "invalid-duplicate-key.yml"}

func TestValidFilesAreValid(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid-*.yml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			args := []string{"--config", f}
			if filepath.Base(f) == "valid-empty.yml" {
				args = append(args, "--upstream", "http://127.0.0.1:7071", "--issuer", "https://idp.example.test/", "--audience", "chat", "--connection-string", fakeConnectionString)
			}
			mustLoadArgs(t, nil, args...)
		})
	}
}

// TestLoadSettingsUnusableFile: when the file cannot be read or parsed, the
// error says so and nothing else. Reporting the settings the file would
// have given as missing ("upstream is required" for a file that sets it)
// sends the user after problems they do not have.
func TestLoadSettingsUnusableFile(t *testing.T) {
	tests := map[string]string{
		"testdata/does-not-exist.yml":        "--config: open testdata/does-not-exist.yml: no such file or directory",
		"testdata/invalid-syntax.yml":        "testdata/invalid-syntax.yml: yaml: line 2: did not find expected '-' indicator",
		"testdata/invalid-duplicate-key.yml": `testdata/invalid-duplicate-key.yml line 5: mapping key "upstream" already defined at line 1`,
	}
	for file, want := range tests {
		t.Run(filepath.Base(file), func(t *testing.T) {
			_, err := loadArgs(t, nil, "--config", file)
			if got := errString(err); got != want {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestLoadSettingsEnvironmentErrors: a bad NEGOTIATE_SIDECAR_* value is
// reported once, naming the variable, and does not also replace the file's
// value with zero (which would add a second, misleading problem).
func TestLoadSettingsEnvironmentErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"number", map[string]string{"NEGOTIATE_SIDECAR_MAX_BODY_BYTES": "64KiB"}, `NEGOTIATE_SIDECAR_MAX_BODY_BYTES="64KiB": not a whole number; use digits only, such as 4096`},
		{"duration", map[string]string{"NEGOTIATE_SIDECAR_SHUTDOWN_TIMEOUT": "soon"}, `NEGOTIATE_SIDECAR_SHUTDOWN_TIMEOUT="soon": not a duration; use a duration such as 30s, 5m or 1h`},
		{"boolean", map[string]string{"NEGOTIATE_SIDECAR_BIND_TO_CALLER_EXPIRY": "maybe"}, `NEGOTIATE_SIDECAR_BIND_TO_CALLER_EXPIRY="maybe": not a boolean; use true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadArgs(t, tt.env, "--config", "testdata/valid-minimal.yml")
			if got := errString(err); got != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestLoadSettingsUsage(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		want  string
		usage bool // a usageError rather than a configuration problem
	}{
		{"stray argument", []string{"--config", "testdata/valid-minimal.yml", "serve"}, `unexpected argument "serve"; the subcommands are check, demo and version, and flags start with --`, true},
		{"unknown flag", []string{"--config", "testdata/valid-minimal.yml", "--audiences", "chat"}, "unknown flag --audiences (did you mean --audience?); negotiate-sidecar --help lists the flags", true},
		{"unknown flag with a value", []string{"-upstrem=http://x"}, "unknown flag -upstrem (did you mean --upstream?); negotiate-sidecar --help lists the flags", true},
		{"scalar flag twice", []string{"--config", "testdata/valid-minimal.yml", "--log-level", "debug", "--log-level=info"}, "flag --log-level is given twice; give it once", true},
		{"flag without its value", []string{"--config", "testdata/valid-minimal.yml", "--upstream"}, "flag --upstream needs a value; negotiate-sidecar --help says which", true},
		{"help", []string{"--help"}, cli.ErrHelp.Error(), false},
		{"short help", []string{"-h"}, cli.ErrHelp.Error(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadArgs(t, nil, tt.args...)
			if got := errString(err); got != tt.want {
				t.Errorf("error %q, want %q", got, tt.want)
			}
			var ue *cli.UsageError
			if errors.As(err, &ue) != tt.usage {
				t.Errorf("usage error: %v, want %v", !tt.usage, tt.usage)
			}
		})
	}
}

// TestLoadSettingsReportsEverythingAtOnce: problems in flags, the
// environment, the file and the connection strings come back in one error,
// so that one run shows them all.
func TestLoadSettingsReportsEverythingAtOnce(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.txt")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.txt")
	entra := "Endpoint=https://fake-west.service.signalr.net;AuthType=azure.app;ClientId=00000000-0000-0000-0000-000000000000"
	broken := "Endpoint=https://fake.service.signalr.net;AccessKey=" + fakeAccessKey + ";Port=http"

	t.Run("settings and connection strings", func(t *testing.T) {
		env := map[string]string{
			"NEGOTIATE_SIDECAR_LOG_FORMAT":           "xml",
			"AzureSignalRConnectionString":           broken,
			"Azure__SignalR__Endpoints__west":        entra,
			"Azure__SignalR__Endpoints__east__other": "AccessKey=" + fakeAccessKey,
		}
		_, err := loadArgs(t, env, "--config", "testdata/invalid-upstream.yml", "--leeway", "10m")
		want := strings.Join([]string{
			`testdata/invalid-upstream.yml line 1: upstream "127.0.0.1:7071": must be an absolute http or https URL, such as http://127.0.0.1:80`,
			`NEGOTIATE_SIDECAR_LOG_FORMAT="xml": choose json or console`,
			`--leeway="10m": choose a value from 0s to 5m`,
			`$AzureSignalRConnectionString: connection string: Port "http" is not a number from 1 to 65535`,
			`$Azure__SignalR__Endpoints__east__other: connection string: missing Endpoint (expected Endpoint=https://<name>.service.signalr.net;AccessKey=...)`,
			`$Azure__SignalR__Endpoints__west: AuthType=azure.app needs ClientId, TenantId and ClientSecret or ClientCert (the path of a PEM certificate with its private key)`,
		}, "\n")
		if got := errString(err); got != want {
			t.Errorf("error:\n%s\nwant:\n%s", got, want)
		}
	})

	// A connection string file that cannot be read must not hide the
	// problems of the connection strings that could.
	t.Run("connection string files and strings", func(t *testing.T) {
		env := map[string]string{"AzureSignalRConnectionString": broken}
		_, err := loadArgs(t, env, "--config", "testdata/valid-minimal.yml", "--connection-string-file", missing, "--connection-string-file", empty)
		got := errString(err)
		for _, want := range []string{
			"connection string file: open " + missing + ": no such file or directory; check --connection-string-file (connection_string_files in the file): it names a file holding one connection string, such as a mounted Secret's key",
			"connection string file " + empty + " is empty",
			`$AzureSignalRConnectionString: connection string: Port "http" is not a number from 1 to 65535`,
		} {
			if !strings.Contains(got, want) {
				t.Errorf("error lacks %q:\n%s", want, got)
			}
		}
		if strings.Contains(got, fakeAccessKey) {
			t.Error("the error shows the access key")
		}
	})
}

// FuzzLoadSettingsFile feeds arbitrary configuration files. loadSettings
// must not panic, and settings it accepts must be complete enough for
// buildRuntime and check, which dereference them without further checks.
func FuzzLoadSettingsFile(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "config.yml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := loadSettings([]string{"--config", path}, environment{}, false)
		if err != nil {
			return
		}
		if len(s.Providers) == 0 {
			t.Fatal("accepted without a provider")
		}
		for _, p := range s.Providers {
			if p.Name == "" || p.Issuer == "" || len(p.Audiences) == 0 || len(p.Algorithms) == 0 || p.UserClaim == "" || p.RefreshInterval <= 0 {
				t.Fatalf("accepted an incomplete provider: %+v", p)
			}
		}
		if _, err := proxy.NewMatcher(s.NegotiatePaths); err != nil {
			t.Fatalf("accepted negotiate paths %q: %v", s.NegotiatePaths, err)
		}
		if eps, err := endpoints(s, environment{}); err != nil || len(eps) == 0 {
			t.Fatalf("accepted, but the endpoints fail: %d, %v", len(eps), err)
		}
	})
}

// The token length limit depends on the service: SignalR's 4096 characters
// cannot be raised, Web PubSub documents none.
func TestMaxTokenLengthRange(t *testing.T) {
	env := map[string]string{"AzureSignalRConnectionString": fakeConnectionString, "WebPubSubConnectionString": fakeConnectionString}
	base := []string{"--upstream", "http://127.0.0.1:7071", "--issuer", "https://idp.example.test/", "--audience", "chat"}
	for _, tt := range []struct {
		service, length string
		err             string
	}{
		{"signalr", "0", ""},
		{"signalr", "4096", ""},
		{"signalr", "600", ""},
		{"signalr", "4097", "the maximum token length 4097 is above the 4096 characters the signalr service accepts"},
		{"webpubsub", "20000", ""},
		{"webpubsub", "32768", ""},
		{"webpubsub", "32769", `--max-token-length="32769": choose 0 (the service's limit) or from 512 to 32768`},
		{"webpubsub", "100", `--max-token-length="100": choose 0 (the service's limit) or from 512 to 32768`},
		{"webpubsub", "-1", "--max-token-length=\"-1\": choose 0 (the service's limit) or from 512 to 32768\nthe maximum token length -1 is negative"},
	} {
		s, err := loadArgs(t, env, append(base, "--service", tt.service, "--max-token-length", tt.length)...)
		if got := errString(err); got != tt.err {
			t.Errorf("%s --max-token-length %s: error %q, want %q", tt.service, tt.length, got, tt.err)
		}
		if err == nil && strconv.Itoa(s.Tokens.MaxTokenLength) != tt.length {
			t.Errorf("%s --max-token-length %s: read %d", tt.service, tt.length, s.Tokens.MaxTokenLength)
		}
	}
}
