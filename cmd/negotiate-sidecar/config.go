package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
	"github.com/negotiate-sidecar/negotiate-sidecar/proxy"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
)

// envPrefix prefixes the environment variable that stands for each flag:
// --jwks-url is NEGOTIATE_SIDECAR_JWKS_URL.
const envPrefix = "NEGOTIATE_SIDECAR_"

// settings is the sidecar's whole configuration: defaults, then the
// configuration file, then NEGOTIATE_SIDECAR_* variables, then flags. Its
// yaml tags are the configuration file's keys.
type settings struct {
	Listen           string        `yaml:"listen"`
	AdminListen      string        `yaml:"admin_listen"`
	Upstream         string        `yaml:"upstream"`
	Service          string        `yaml:"service"`
	NegotiatePaths   []string      `yaml:"negotiate_paths"`
	MaxBodyBytes     int64         `yaml:"max_body_bytes"`
	NegotiateTimeout time.Duration `yaml:"negotiate_timeout"`
	LogLevel         string        `yaml:"log_level"`
	LogFormat        string        `yaml:"log_format"`
	ShutdownDelay    time.Duration `yaml:"shutdown_delay"`
	ShutdownTimeout  time.Duration `yaml:"shutdown_timeout"`
	MaxConnections   int           `yaml:"max_connections"`
	ReloadInterval   time.Duration `yaml:"reload_interval"`
	TokenCacheSize   int           `yaml:"token_cache_size"`

	Providers []providerSettings `yaml:"providers"`
	SignalR   signalRSettings    `yaml:"signalr"`
	Tokens    tokenSettings      `yaml:"tokens"`

	// configFile is the path the file was read from, if any.
	configFile string `yaml:"-"`
}

// providerSettings configures one identity provider.
type providerSettings struct {
	Name            string         `yaml:"name"`
	Issuer          string         `yaml:"issuer"`
	JWKSURLs        []string       `yaml:"jwks_urls"`
	JWKSFile        string         `yaml:"jwks_file"`
	Audiences       []string       `yaml:"audiences"`
	Algorithms      []string       `yaml:"algorithms"`
	UserClaim       string         `yaml:"user_claim"`
	Leeway          *time.Duration `yaml:"leeway"` // nil: default; 0 is a valid choice
	RefreshInterval time.Duration  `yaml:"refresh_interval"`
	MaxStaleness    time.Duration  `yaml:"max_staleness"`
	InsecureHTTP    bool           `yaml:"insecure_http"`
}

// signalRSettings lists connection strings beyond those found in the
// environment (AzureSignalRConnectionString, Azure__SignalR__Endpoints__*).
type signalRSettings struct {
	ConnectionStrings     []string `yaml:"connection_strings"`
	ConnectionStringFiles []string `yaml:"connection_string_files"`
}

// tokenSettings shape the rewritten token beyond the user id.
type tokenSettings struct {
	ForwardClaims       []string      `yaml:"forward_claims"`
	MaxTokenLifetime    time.Duration `yaml:"max_token_lifetime"`
	BindToCallerExpiry  bool          `yaml:"bind_to_caller_expiry"`
	CloseOnCallerExpiry bool          `yaml:"close_on_caller_expiry"`
	MaxTokenLength      int           `yaml:"max_token_length"` // 0: the service's limit
}

// The range of --max-token-length. Under the minimum no SDK's token fits;
// the Web PubSub maximum keeps the URL a browser puts the token in within
// what HTTP servers commonly accept.
const (
	minTokenLength          = 512
	maxWebPubSubTokenLength = 32768
)

const (
	defaultLeeway          = 30 * time.Second
	defaultRefreshInterval = 15 * time.Minute
	defaultReloadInterval  = 2 * time.Second
	// defaultTokenCacheSize holds the tokens of a few thousand active
	// callers in at most 8 MiB (auth.EntryBudget each).
	defaultTokenCacheSize  = 4096
	defaultShutdownTimeout = 15 * time.Second
	// defaultShutdownDelay covers how long Kubernetes usually takes to
	// take a terminating pod out of its Services' endpoints and to have
	// every node's kube-proxy (or an ingress controller) act on it: a few
	// seconds.
	defaultShutdownDelay = 5 * time.Second
	// defaultMaxConnections bounds the memory and file descriptors clients
	// can make the proxy hold. An idle connection costs the proxy some 10
	// to 20 KiB, and one whose request is being proxied some 45 KiB with
	// its connection to the app (measured with net/http on Go 1.26), so
	// 2048 busy connections fit in about 90 MiB, within the chart's default
	// memory limit of 128 MiB. Idle keep-alive connections are closed to
	// make room when the limit is reached, so in practice it counts busy
	// connections, and 2048 requests at once are far more than a Functions
	// host answers.
	defaultMaxConnections = 2048
	maxMaxConnections     = 1 << 20
)

func defaultSettings() settings {
	return settings{
		Listen:           ":8080",
		AdminListen:      ":9090",
		Service:          "signalr",
		MaxBodyBytes:     proxy.DefaultMaxBodyBytes,
		NegotiateTimeout: proxy.DefaultNegotiateTimeout,
		LogLevel:         "info",
		LogFormat:        "json",
		ShutdownDelay:    defaultShutdownDelay,
		ShutdownTimeout:  defaultShutdownTimeout,
		MaxConnections:   defaultMaxConnections,
		ReloadInterval:   defaultReloadInterval,
		TokenCacheSize:   defaultTokenCacheSize,
	}
}

// listFlag is a repeatable flag. From the environment it takes a
// comma-separated list.
type listFlag struct{ values *[]string }

func (l listFlag) String() string {
	if l.values == nil {
		return ""
	}
	return strings.Join(*l.values, ",")
}

func (l listFlag) Set(v string) error {
	*l.values = append(*l.values, v)
	return nil
}

// commaFlag holds a comma-separated list, replaced as a whole.
type commaFlag struct{ values *[]string }

func (c commaFlag) String() string { return listFlag(c).String() }

func (c commaFlag) Set(v string) error {
	*c.values = splitList(v)
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// flagValues holds what the command line and environment said. Only the
// flags that were given are applied over the file.
type flagValues struct {
	configFile string
	s          settings
	provider   providerSettings
	leeway     time.Duration
	connString string
	connFiles  []string
	token      string // check --token
}

// newFlagSet declares every flag. check is true for the check subcommand,
// which adds --token.
func newFlagSet(name string, v *flagValues, check bool, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&v.configFile, "config", "", "YAML configuration `file`; flags and NEGOTIATE_SIDECAR_* variables override it")
	fs.StringVar(&v.s.Listen, "listen", ":8080", "`address` of the proxy, the one clients and the Kubernetes Service reach")
	fs.StringVar(&v.s.AdminListen, "admin-listen", ":9090", "`address` of /healthz, /readyz and /metrics")
	fs.StringVar(&v.s.Upstream, "upstream", "", "the app's base `URL`, such as http://127.0.0.1:80 (required)")
	fs.StringVar(&v.s.Service, "service", "signalr", "token format: signalr (asrs.s.uid) or webpubsub (sub, token also in url)")
	fs.Var(listFlag{&v.s.NegotiatePaths}, "negotiate-path", "path `pattern` whose responses are rewritten, such as /api/*/negotiate (repeatable; default: any path ending in /negotiate)")
	fs.Int64Var(&v.s.MaxBodyBytes, "max-body-bytes", proxy.DefaultMaxBodyBytes, "largest negotiate response body read, in `bytes`")
	fs.DurationVar(&v.s.NegotiateTimeout, "negotiate-timeout", proxy.DefaultNegotiateTimeout, "how long the app may take to answer a negotiate before the caller gets 504, and the caller to send a negotiate's body before it gets 408")
	fs.IntVar(&v.s.MaxConnections, "max-connections", defaultMaxConnections, "most client `connections` the proxy holds open at once; when all are taken, idle ones are closed and new ones wait")
	fs.StringVar(&v.s.LogLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&v.s.LogFormat, "log-format", "json", "log `format`: json or console")
	fs.DurationVar(&v.s.ShutdownDelay, "shutdown-delay", defaultShutdownDelay, "after SIGTERM, how long the proxy keeps accepting and serving, with readiness 503, while Kubernetes updates the endpoints (0: stop accepting at once)")
	fs.DurationVar(&v.s.ShutdownTimeout, "shutdown-timeout", defaultShutdownTimeout, "after the shutdown delay, how long in-flight requests may take to finish")
	fs.DurationVar(&v.s.ReloadInterval, "reload-interval", defaultReloadInterval, "how often the configuration and connection string files are checked for changes")
	fs.IntVar(&v.s.TokenCacheSize, "token-cache-size", defaultTokenCacheSize, "verified caller tokens remembered until they expire, so a repeated token skips the signature check (0: off)")

	fs.StringVar(&v.provider.Issuer, "issuer", "", "required iss of callers' tokens, exactly; without --jwks-url the JWKS is found by OIDC discovery at `URL`/.well-known/openid-configuration")
	fs.Var(listFlag{&v.provider.JWKSURLs}, "jwks-url", "JWKS `URL` of the identity provider (repeatable)")
	fs.StringVar(&v.provider.JWKSFile, "jwks-file", "", "`path` of a static JWKS file, for offline use and tests")
	fs.Var(listFlag{&v.provider.Audiences}, "audience", "accepted aud of callers' tokens (repeatable; at least one required)")
	fs.StringVar(&v.provider.UserClaim, "user-claim", "sub", "claim holding the user id: a claim of exactly this `name`, else a dotted path into nested claims")
	fs.Var(commaFlag{&v.provider.Algorithms}, "algorithms", "accepted JWS algorithms, comma-separated (default "+strings.Join(auth.DefaultAlgorithms(), ",")+")")
	fs.DurationVar(&v.leeway, "leeway", defaultLeeway, "clock skew allowed on exp, nbf and iat")
	fs.DurationVar(&v.provider.RefreshInterval, "jwks-refresh-interval", defaultRefreshInterval, "how often the identity provider's keys are fetched")
	fs.DurationVar(&v.provider.MaxStaleness, "max-staleness", 0, "readiness fails once the newest keys fetched are older than this (0: never)")
	fs.BoolVar(&v.provider.InsecureHTTP, "insecure-http", false, "allow plain http to the identity provider (issuer for discovery, JWKS URLs), for one inside the cluster without TLS; http to loopback is always allowed")

	fs.StringVar(&v.connString, "connection-string", "", "Azure SignalR connection string (default: $AzureSignalRConnectionString, the setting the Functions app reads)")
	fs.Var(listFlag{&v.connFiles}, "connection-string-file", "`path` of a file holding a connection string, re-read when it changes (repeatable)")

	fs.Var(listFlag{&v.s.Tokens.ForwardClaims}, "forward-claim", "caller `claim` copied into the service token (repeatable)")
	fs.DurationVar(&v.s.Tokens.MaxTokenLifetime, "max-token-lifetime", 0, "cap on the service token's lifetime (0: keep the app's)")
	fs.BoolVar(&v.s.Tokens.BindToCallerExpiry, "bind-to-caller-expiry", false, "the service token never outlives the caller's token")
	fs.BoolVar(&v.s.Tokens.CloseOnCallerExpiry, "close-on-caller-expiry", false, "also ask the service to close the connection when the caller's token expires")
	fs.IntVar(&v.s.Tokens.MaxTokenLength, "max-token-length", 0, fmt.Sprintf("longest service token produced, in `characters` (0: %d for signalr, the service's limit; %d for webpubsub, which documents none)", rewrite.MaxTokenLength, rewrite.DefaultMaxTokenLength))
	if check {
		fs.StringVar(&v.token, "token", "", "a caller's `JWT` to judge as the sidecar would")
	}
	fs.Usage = func() {
		out := fs.Output()
		if check {
			fmt.Fprint(out, "Usage: negotiate-sidecar check [flags]\n\nValidates the configuration, contacts the identity providers and the app, and reports\none line per check. Exits non-zero if anything failed.\n\n")
		} else {
			fmt.Fprint(out, "Usage: negotiate-sidecar [flags]\n       negotiate-sidecar check [flags] [--token JWT]\n       negotiate-sidecar demo [--user ID] [-v]\n       negotiate-sidecar version\n\n")
		}
		fmt.Fprint(out, "Every flag can also be set as NEGOTIATE_SIDECAR_<FLAG_NAME> (--jwks-url: NEGOTIATE_SIDECAR_JWKS_URL).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// providerFlags are the flags that describe the single provider given on the
// command line.
var providerFlags = []string{"issuer", "jwks-url", "jwks-file", "audience", "user-claim", "algorithms", "leeway", "jwks-refresh-interval", "max-staleness", "insecure-http"}

// loadSettings resolves the configuration from the command line, the
// environment and the configuration file. Every problem is reported at once,
// each with what to do.
func loadSettings(args []string, env environment, check bool, stderr io.Writer) (settings, flagValues, error) {
	var v flagValues
	name := "negotiate-sidecar"
	if check {
		name += " check"
	}
	fs := newFlagSet(name, &v, check, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return settings{}, v, err
		}
		return settings{}, v, usageError{err}
	}
	if fs.NArg() > 0 {
		return settings{}, v, usageError{fmt.Errorf("unexpected argument %q; the subcommands are check, demo and version, and flags start with --", fs.Arg(0))}
	}

	var problems []error
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || f.Name == "token" {
			return
		}
		name := envName(f.Name)
		val, ok := env.lookup(name)
		if !ok || val == "" {
			return
		}
		if _, repeatable := f.Value.(listFlag); repeatable {
			for _, item := range splitList(val) {
				_ = f.Value.Set(item)
			}
			given[f.Name] = true
			return
		}
		if err := f.Value.Set(val); err != nil {
			// Not marked as given: the flag now holds a zero value that
			// must not override the file and cause a second, false error.
			problems = append(problems, fmt.Errorf("%s=%q: %v", name, val, err))
			return
		}
		given[f.Name] = true
	})

	s := defaultSettings()
	if v.configFile != "" {
		if err := s.readFile(v.configFile); err != nil {
			problems = append(problems, err)
			var ue unusableFile
			if errors.As(err, &ue) {
				// Checking the defaults would only add false problems
				// about settings the file may well have.
				return s, v, errors.Join(problems...)
			}
		}
	}
	for name := range given {
		v.apply(&s, name)
	}
	if given["connection-string"] {
		s.SignalR.ConnectionStrings = append(s.SignalR.ConnectionStrings, v.connString)
	}
	if given["connection-string-file"] {
		s.SignalR.ConnectionStringFiles = append(s.SignalR.ConnectionStringFiles, v.connFiles...)
	}
	var providerGiven []string
	for _, f := range providerFlags {
		if given[f] {
			providerGiven = append(providerGiven, "--"+f)
		}
	}
	if len(providerGiven) > 0 {
		switch len(s.Providers) {
		case 0:
			s.Providers = []providerSettings{{}}
			fallthrough
		case 1:
			p := &s.Providers[0]
			for _, f := range providerFlags {
				if given[f] {
					v.applyProvider(p, f)
				}
			}
		default:
			problems = append(problems, fmt.Errorf("%s (flags or NEGOTIATE_SIDECAR_* variables) describe a single identity provider, but %s configures %d; set them in the file instead", strings.Join(providerGiven, ", "), v.configFile, len(s.Providers)))
		}
	}
	problems = append(problems, s.validate()...)
	// Connection strings are checked here too, so that one run reports
	// every problem, not one per attempt.
	if _, err := endpoints(s, env); err != nil {
		problems = append(problems, err)
	}
	return s, v, errors.Join(problems...)
}

// usageError is a command line that did not parse, as opposed to a
// configuration with problems.
type usageError struct{ error }

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// apply copies one given top-level flag's value over the file's.
func (v *flagValues) apply(s *settings, name string) {
	switch name {
	case "listen":
		s.Listen = v.s.Listen
	case "admin-listen":
		s.AdminListen = v.s.AdminListen
	case "upstream":
		s.Upstream = v.s.Upstream
	case "service":
		s.Service = v.s.Service
	case "negotiate-path":
		s.NegotiatePaths = v.s.NegotiatePaths
	case "max-body-bytes":
		s.MaxBodyBytes = v.s.MaxBodyBytes
	case "negotiate-timeout":
		s.NegotiateTimeout = v.s.NegotiateTimeout
	case "log-level":
		s.LogLevel = v.s.LogLevel
	case "log-format":
		s.LogFormat = v.s.LogFormat
	case "max-connections":
		s.MaxConnections = v.s.MaxConnections
	case "shutdown-delay":
		s.ShutdownDelay = v.s.ShutdownDelay
	case "shutdown-timeout":
		s.ShutdownTimeout = v.s.ShutdownTimeout
	case "reload-interval":
		s.ReloadInterval = v.s.ReloadInterval
	case "token-cache-size":
		s.TokenCacheSize = v.s.TokenCacheSize
	case "forward-claim":
		s.Tokens.ForwardClaims = v.s.Tokens.ForwardClaims
	case "max-token-lifetime":
		s.Tokens.MaxTokenLifetime = v.s.Tokens.MaxTokenLifetime
	case "bind-to-caller-expiry":
		s.Tokens.BindToCallerExpiry = v.s.Tokens.BindToCallerExpiry
	case "close-on-caller-expiry":
		s.Tokens.CloseOnCallerExpiry = v.s.Tokens.CloseOnCallerExpiry
	case "max-token-length":
		s.Tokens.MaxTokenLength = v.s.Tokens.MaxTokenLength
	}
}

func (v *flagValues) applyProvider(p *providerSettings, name string) {
	switch name {
	case "issuer":
		p.Issuer = v.provider.Issuer
	case "jwks-url":
		p.JWKSURLs = v.provider.JWKSURLs
	case "jwks-file":
		p.JWKSFile = v.provider.JWKSFile
	case "audience":
		p.Audiences = v.provider.Audiences
	case "user-claim":
		p.UserClaim = v.provider.UserClaim
	case "algorithms":
		p.Algorithms = v.provider.Algorithms
	case "leeway":
		l := v.leeway
		p.Leeway = &l
	case "jwks-refresh-interval":
		p.RefreshInterval = v.provider.RefreshInterval
	case "max-staleness":
		p.MaxStaleness = v.provider.MaxStaleness
	case "insecure-http":
		p.InsecureHTTP = v.provider.InsecureHTTP
	}
}

// unknownField matches the YAML decoder's message for an unknown key.
var unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)

// readFile decodes the configuration file strictly: an unknown key is an
// error naming the key and its line, because a misspelt key that is silently
// ignored is a setting the user believes in and does not have.
func (s *settings) readFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return unusableFile{fmt.Errorf("--config: %w", err)}
	}
	s.configFile = path
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file sets nothing
		}
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return unusableFile{fmt.Errorf("%s: %w", path, err)}
		}
		var msgs []string
		lost := false
		for _, m := range te.Errors {
			if sm := unknownField.FindStringSubmatch(m); sm != nil {
				m = fmt.Sprintf("line %s: unknown key %q; see the configuration reference in the README for the keys there are", sm[1], sm[2])
			}
			// The decoder drops a whole mapping with a repeated key.
			lost = lost || strings.Contains(m, "already defined")
			msgs = append(msgs, fmt.Sprintf("%s %s", path, m))
		}
		err := errors.New(strings.Join(msgs, "\n"))
		if lost {
			return unusableFile{err}
		}
		s.resolvePaths(path)
		return err
	}
	var extra yaml.Node
	if dec.Decode(&extra) != io.EOF {
		return fmt.Errorf("%s: holds more than one YAML document; keep the configuration in one", path)
	}
	s.resolvePaths(path)
	return nil
}

// unusableFile is a configuration file that could not be read or decoded at
// all, as opposed to one with problems in some of its settings.
type unusableFile struct{ error }

// resolvePaths makes the file's relative paths relative to the file's own
// directory, so that a configuration and the files it names can move
// together, wherever the sidecar is started from.
func (s *settings) resolvePaths(configPath string) {
	dir := filepath.Dir(configPath)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	for i := range s.Providers {
		s.Providers[i].JWKSFile = rel(s.Providers[i].JWKSFile)
	}
	for i, f := range s.SignalR.ConnectionStringFiles {
		s.SignalR.ConnectionStringFiles[i] = rel(f)
	}
}

// validate checks every setting and returns all problems found.
func (s *settings) validate() []error {
	var problems []error
	add := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }
	if s.Upstream == "" {
		add("upstream is required (--upstream or upstream:): the app's address in the pod, such as http://127.0.0.1:80")
	} else if u, err := url.Parse(s.Upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("upstream %q must be an absolute http or https URL, such as http://127.0.0.1:80", s.Upstream)
	}
	if s.Service != "signalr" && s.Service != "webpubsub" {
		add("service %q: choose signalr or webpubsub", s.Service)
	}
	if _, err := proxy.NewMatcher(s.NegotiatePaths); err != nil {
		add("%v", err)
	}
	if s.MaxBodyBytes < 1024 || s.MaxBodyBytes > 16<<20 {
		add("max_body_bytes %d: choose from 1024 to 16777216", s.MaxBodyBytes)
	}
	if s.NegotiateTimeout < 100*time.Millisecond || s.NegotiateTimeout > 10*time.Minute {
		add("negotiate timeout %s: choose from 100ms to 10m", s.NegotiateTimeout)
	}
	if s.LogFormat != "json" && s.LogFormat != "console" {
		add("log format %q: choose json or console", s.LogFormat)
	}
	if _, err := parseLevel(s.LogLevel); err != nil {
		problems = append(problems, err)
	}
	if s.MaxConnections < 1 || s.MaxConnections > maxMaxConnections {
		add("max connections %d: choose from 1 to %d", s.MaxConnections, maxMaxConnections)
	}
	if s.ShutdownDelay < 0 {
		add("shutdown delay %s must not be negative", s.ShutdownDelay)
	}
	if s.ShutdownTimeout <= 0 {
		add("shutdown timeout %s must be positive", s.ShutdownTimeout)
	}
	if s.ReloadInterval < 100*time.Millisecond {
		add("reload interval %s: choose at least 100ms", s.ReloadInterval)
	}
	if s.TokenCacheSize < 0 || s.TokenCacheSize > 1_000_000 {
		add("token cache size %d: choose from 0 (off) to 1000000 tokens", s.TokenCacheSize)
	}
	if len(s.Providers) == 0 {
		add("no identity provider: give --issuer and --audience, or list providers: in the configuration file")
	}
	var names, issuers []string
	for i := range s.Providers {
		p := &s.Providers[i]
		if p.Name == "" {
			p.Name = defaultProviderName(p.Issuer, i)
		}
		where := "provider " + strconv.Quote(p.Name)
		if slices.Contains(names, p.Name) {
			add("%s: the name is used twice; give each provider its own name: (names label metrics and must differ)", where)
		}
		names = append(names, p.Name)
		if p.Issuer == "" {
			add("%s: issuer is required (--issuer): the exact iss claim of your callers' tokens", where)
		} else if slices.Contains(issuers, p.Issuer) {
			add("%s: issuer %q is configured twice; a token must map to exactly one provider, so merge their audiences into one", where, p.Issuer)
		}
		issuers = append(issuers, p.Issuer)
		if len(p.Audiences) == 0 {
			add("%s: at least one audience is required (--audience): the aud your callers' tokens carry", where)
		} else if slices.Contains(p.Audiences, "") {
			add("%s: an audience is empty; list the aud values your callers' tokens carry", where)
		}
		for _, u := range p.JWKSURLs {
			if err := auth.CheckURL(u, p.InsecureHTTP); err != nil {
				add("%s: JWKS URL %q %v", where, u, err)
			}
		}
		// Without a JWKS URL or file the keys are found by discovery from
		// the issuer, which must then be a URL the key set may fetch;
		// otherwise the issuer is only compared with iss, and any string
		// will do. Caught here, an issuer that cannot be fetched is a
		// configuration error rather than a pod unready for ever.
		if p.Issuer != "" && len(p.JWKSURLs) == 0 && p.JWKSFile == "" {
			if err := auth.CheckURL(p.Issuer, p.InsecureHTTP); errors.Is(err, auth.ErrInsecureHTTP) {
				add("%s: issuer %q, from which OpenID Connect discovery finds the keys, %v", where, p.Issuer, err)
			} else if err != nil {
				add("%s: issuer %q must be an absolute https URL: without jwks_urls (--jwks-url) or jwks_file (--jwks-file), the keys are found by OpenID Connect discovery from it", where, p.Issuer)
			}
		}
		if p.UserClaim == "" {
			p.UserClaim = "sub"
		}
		if len(p.Algorithms) == 0 {
			p.Algorithms = auth.DefaultAlgorithms()
		}
		for _, a := range p.Algorithms {
			if !slices.Contains(auth.DefaultAlgorithms(), a) {
				add("%s: algorithm %q is not accepted; choose from %s (never none or HS*)", where, a, strings.Join(auth.DefaultAlgorithms(), ","))
			}
		}
		if p.Leeway == nil {
			l := defaultLeeway
			p.Leeway = &l
		} else if *p.Leeway < 0 || *p.Leeway > 5*time.Minute {
			add("%s: leeway %s: choose a value from 0s to 5m", where, *p.Leeway)
		}
		if p.RefreshInterval == 0 {
			p.RefreshInterval = defaultRefreshInterval
		} else if p.RefreshInterval < time.Minute {
			add("%s: refresh interval %s: choose at least 1m; rotated keys are fetched on demand anyway", where, p.RefreshInterval)
		}
		if p.MaxStaleness < 0 || (p.MaxStaleness > 0 && p.MaxStaleness < 2*p.RefreshInterval) {
			add("%s: max staleness %s must be 0 (never) or at least twice the refresh interval (%s)", where, p.MaxStaleness, p.RefreshInterval)
		}
	}
	for _, c := range s.Tokens.ForwardClaims {
		if c == "" {
			add("forward_claims: a claim name is empty")
		}
	}
	if s.Tokens.MaxTokenLifetime < 0 {
		add("max token lifetime %s must not be negative", s.Tokens.MaxTokenLifetime)
	}
	if n := s.Tokens.MaxTokenLength; n != 0 {
		limit := maxWebPubSubTokenLength
		if s.Service == "signalr" {
			limit = rewrite.MaxTokenLength // Azure SignalR Service refuses longer tokens
		}
		if n < minTokenLength || n > limit {
			add("max token length %d: choose 0 (the service's limit) or from %d to %d for %s", n, minTokenLength, limit, s.Service)
		}
	}
	if s.Tokens.CloseOnCallerExpiry && !s.Tokens.BindToCallerExpiry {
		add("close_on_caller_expiry needs bind_to_caller_expiry: the connection can only close when the token it was opened with expires")
	}
	return problems
}

// defaultProviderName names a provider after its issuer's host, which reads
// well in metrics ("login.microsoftonline.com").
func defaultProviderName(issuer string, i int) string {
	if u, err := url.Parse(issuer); err == nil && u.Host != "" {
		return u.Host
	}
	return "provider-" + strconv.Itoa(i+1)
}
