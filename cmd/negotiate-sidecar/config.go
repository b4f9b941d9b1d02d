package main

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
	"github.com/negotiate-sidecar/negotiate-sidecar/cmd/internal/cli"
	"github.com/negotiate-sidecar/negotiate-sidecar/proxy"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
)

// envPrefix prefixes the environment variable that stands for each flag:
// --jwks-url is NEGOTIATE_SIDECAR_JWKS_URL.
const envPrefix = "NEGOTIATE_SIDECAR_"

// settings is the sidecar's whole configuration, declared setting by
// setting in declarations: defaults, then the configuration file, then
// NEGOTIATE_SIDECAR_* variables, then flags.
type settings struct {
	Listen           string
	AdminListen      string
	Upstream         string
	Service          string
	NegotiatePaths   []string
	MaxBodyBytes     int64
	NegotiateTimeout time.Duration
	LogLevel         string
	LogFormat        string
	ShutdownDelay    time.Duration
	ShutdownTimeout  time.Duration
	MaxConnections   int
	ReloadInterval   time.Duration
	TokenCacheSize   int

	Providers []providerSettings
	SignalR   signalRSettings
	Tokens    tokenSettings

	configFile string // the file the settings were read from, if any
	token      string // check --token
}

// providerSettings configures one identity provider.
type providerSettings struct {
	Name            string
	Issuer          string
	JWKSURLs        []string
	JWKSFile        string
	Audiences       []string
	Algorithms      []string
	UserClaim       string
	Leeway          time.Duration
	RefreshInterval time.Duration
	MaxStaleness    time.Duration
	InsecureHTTP    bool
}

// signalRSettings lists connection strings beyond those found in the
// environment (AzureSignalRConnectionString, Azure__SignalR__Endpoints__*).
type signalRSettings struct {
	ConnectionStrings     []string
	ConnectionStringFiles []string
}

// tokenSettings shape the rewritten token beyond the user id.
type tokenSettings struct {
	ForwardClaims       []string
	MaxTokenLifetime    time.Duration
	BindToCallerExpiry  bool
	CloseOnCallerExpiry bool
	MaxTokenLength      int // 0: the service's limit
}

// defaultMaxConnections bounds the memory and file descriptors clients can
// make the proxy hold. An idle connection costs the proxy some 10 to 20 KiB,
// and one whose request is being proxied some 45 KiB with its connection to
// the app (measured with net/http on Go 1.26), so 2048 busy connections fit
// in about 90 MiB, within the chart's default memory limit of 128 MiB. Idle
// keep-alive connections are closed to make room when the limit is reached,
// so in practice it counts busy connections, and 2048 requests at once are
// far more than a Functions host answers. The proxy keeps as many idle
// connections to the app for negotiates and as many for other routes
// (proxy.NewTransport), for 90 seconds after a peak, so the memory of a peak
// stays that long.
//
// The default token cache of 4096 holds the tokens of a few thousand active
// callers in at most 8 MiB (auth.EntryBudget each); the default shutdown
// delay of 5s covers how long Kubernetes usually takes to take a
// terminating pod out of its Services' endpoints and to have every node's
// kube-proxy (or an ingress controller) act on it.
const defaultMaxConnections = 2048

// The range of --max-token-length. Under the minimum no SDK's token fits;
// the maximum keeps the URL a browser puts a Web PubSub token in within what
// HTTP servers commonly accept. The service's own limit (SignalR's 4096) is
// rewrite's to enforce.
const (
	minTokenLength = 512
	maxTokenLength = 32768
)

// top and prov bind a setting to a field of the settings, or of the
// provider the setting is for.
func top[T any](field func(*settings) *T) func(*settings, int) *T {
	return func(s *settings, _ int) *T { return field(s) }
}

func prov[T any](field func(*providerSettings) *T) func(*settings, int) *T {
	return func(s *settings, i int) *T { return field(&s.Providers[i]) }
}

// declarations declare every setting once: flag, file key, default, parser,
// range and help. The flags, --help, the layering of the file, the
// environment and the flags, and the README's configuration table all come
// from here.
func declarations() []cli.Setting[settings] {
	return slices.Concat(serverDeclarations(), providerDeclarations(), tokenDeclarations())
}

// serverDeclarations are the settings of the proxy and admin servers.
func serverDeclarations() []cli.Setting[settings] {
	return []cli.Setting[settings]{
		{Flag: "config", Meta: "FILE", Path: true, Watch: true,
			Help:  "The configuration file. It is re-read when it changes.",
			Value: cli.String(top(func(s *settings) *string { return &s.configFile }), nil)},
		{Flag: "listen", Key: "listen", Default: ":8080",
			Help:  "Address of the proxy, the one clients reach.",
			Value: cli.String(top(func(s *settings) *string { return &s.Listen }), nil)},
		{Flag: "upstream", Key: "upstream", Meta: "URL", DefaultDoc: "(required)",
			Help:  "The app's base URL in the pod, such as `http://127.0.0.1:80`.",
			Value: cli.String(top(func(s *settings) *string { return &s.Upstream }), checkUpstreamURL)},
		{Flag: "admin-listen", Key: "admin_listen", Default: ":9090",
			Help:  "Address of `/healthz`, `/readyz` and `/metrics`.",
			Value: cli.String(top(func(s *settings) *string { return &s.AdminListen }), nil)},
		{Flag: "service", Key: "service", Default: "signalr",
			Help:  "`signalr` (user id in `asrs.s.uid`) or `webpubsub` (Azure Web PubSub: user id in `sub`, and the token inside `url` rewritten too; the connection string then defaults to `$WebPubSubConnectionString`).",
			Value: cli.String(top(func(s *settings) *string { return &s.Service }), checkService)},
		{Flag: "negotiate-path", Key: "negotiate_paths", Meta: "PATTERN", DefaultDoc: "any path whose last segment is `negotiate`",
			Help:  "Paths whose responses are rewritten (repeatable), as `path.Match` patterns such as `/api/*/negotiate`.",
			Value: cli.List(top(func(s *settings) *[]string { return &s.NegotiatePaths }), false, checkNegotiatePaths)},
		{Flag: "max-body-bytes", Key: "max_body_bytes", Default: strconv.Itoa(proxy.DefaultMaxBodyBytes),
			Help:  "Largest negotiate response read; a larger one is refused with 502.",
			Value: cli.Int(top(func(s *settings) *int64 { return &s.MaxBodyBytes }), cli.Between[int64](1024, 16<<20))},
		{Flag: "negotiate-timeout", Key: "negotiate_timeout", Default: proxy.DefaultNegotiateTimeout.String(),
			Help:  "How long the app may take to answer a negotiate (100ms to 10m); past it the caller gets 504. With Web PubSub and Microsoft Entra ID it bounds the app's answer and the sidecar's request for the caller's token together (502, `issue`, when that request runs out). It also bounds how long a caller may take to send a negotiate's body (408 past it). Other routes are not bounded.",
			Value: cli.Duration(top(func(s *settings) *time.Duration { return &s.NegotiateTimeout }), cli.Between(100*time.Millisecond, 10*time.Minute))},
		{Flag: "max-connections", Key: "max_connections", Default: strconv.Itoa(defaultMaxConnections),
			Help:  "Most client connections the proxy holds open at once (1 to 1048576). When all are taken, idle keep-alive connections are closed to make room and new connections wait until one closes. As many idle connections to the app are kept for negotiates, and as many for other routes, for 90 seconds after a peak.",
			Value: cli.Int(top(func(s *settings) *int { return &s.MaxConnections }), cli.Between(1, 1<<20))},
		{Flag: "log-level", Key: "log_level", Default: "info",
			Help:  "`debug`, `info`, `warn` or `error`. Applied on reload.",
			Value: cli.String(top(func(s *settings) *string { return &s.LogLevel }), func(v string) error { _, err := parseLevel(v); return err })},
		{Flag: "log-format", Key: "log_format", Default: "json",
			Help:  "`json` or `console`.",
			Value: cli.String(top(func(s *settings) *string { return &s.LogFormat }), oneOf("json", "console"))},
		{Flag: "shutdown-delay", Key: "shutdown_delay", Default: "5s",
			Help:  "After SIGTERM, how long the proxy keeps accepting and serving, with readiness already 503, while Kubernetes takes the pod out of its Services' endpoints. `0s` stops accepting at once.",
			Value: cli.Duration(top(func(s *settings) *time.Duration { return &s.ShutdownDelay }), cli.AtLeast[time.Duration](0))},
		{Flag: "shutdown-timeout", Key: "shutdown_timeout", Default: "15s",
			Help:  "After the shutdown delay, how long in-flight requests may take to finish.",
			Value: cli.Duration(top(func(s *settings) *time.Duration { return &s.ShutdownTimeout }), positive)},
		{Flag: "reload-interval", Key: "reload_interval", Default: "2s",
			Help:  "How often the configuration and connection string files are checked for changes.",
			Value: cli.Duration(top(func(s *settings) *time.Duration { return &s.ReloadInterval }), cli.AtLeast(100*time.Millisecond))},
		{Flag: "token-cache-size", Key: "token_cache_size", Default: "4096",
			Help:  "Verified caller tokens remembered, so that a token presented again (every reconnect, every API call) skips the signature check. Only tokens that verified are kept, each until its `exp` plus `leeway`, and all of a provider's are dropped when its keys change. Memory stays under 2 KiB a token (8 MiB at the default); the least recently used go first. `0` turns it off. Restart to apply a change.",
			Value: cli.Int(top(func(s *settings) *int { return &s.TokenCacheSize }), cli.Between(0, 1_000_000))},
	}
}

// providerDeclarations are the settings of each identity provider.
func providerDeclarations() []cli.Setting[settings] {
	return []cli.Setting[settings]{
		{Key: "providers[].name", Group: "providers",
			Help:  "The provider's name in logs and metrics. Default: the issuer's host, such as `login.microsoftonline.com`.",
			Value: cli.String(prov(func(p *providerSettings) *string { return &p.Name }), nil)},
		{Flag: "issuer", Key: "providers[].issuer", Meta: "URL", DefaultDoc: "(required)", Group: "providers",
			Help:  "The exact `iss` of your callers' tokens. Without a JWKS URL or file, the JWKS is found by OpenID Connect discovery at `URL/.well-known/openid-configuration`, whose `issuer` must equal this value; the issuer must then be an `https` URL (see `--insecure-http`), and so must the `jwks_uri` the document names. With a JWKS URL or file the issuer is only compared with `iss`, and may be any string.",
			Value: cli.String(prov(func(p *providerSettings) *string { return &p.Issuer }), auth.CheckIssuer)},
		{Flag: "jwks-url", Key: "providers[].jwks_urls", Meta: "URL", Group: "providers",
			Help:  "JWKS of the identity provider (repeatable; keys of all URLs are accepted), over `https` (see `--insecure-http`).",
			Value: cli.List(prov(func(p *providerSettings) *[]string { return &p.JWKSURLs }), false, nil)},
		{Flag: "jwks-file", Key: "providers[].jwks_file", Meta: "PATH", Group: "providers", Path: true,
			Help:  "A static JWKS file, for offline use and tests.",
			Value: cli.String(prov(func(p *providerSettings) *string { return &p.JWKSFile }), nil)},
		{Flag: "audience", Key: "providers[].audiences", Meta: "AUD", DefaultDoc: "(required)", Group: "providers",
			Help:  "Accepted `aud` (repeatable); a token must carry at least one of them.",
			Value: cli.List(prov(func(p *providerSettings) *[]string { return &p.Audiences }), false, auth.CheckAudiences)},
		{Flag: "user-claim", Key: "providers[].user_claim", Meta: "NAME", Default: "sub", Group: "providers",
			Help:  "Claim holding the user id: a claim of exactly this name if present (URI claim names contain dots), else a dotted path into nested objects (`ext.user.id`). A missing, empty or non-string value is refused with 401. With Microsoft Entra ID, `oid` is the stable object id.",
			Value: cli.String(prov(func(p *providerSettings) *string { return &p.UserClaim }), nil)},
		{Flag: "algorithms", Key: "providers[].algorithms", Default: strings.Join(auth.DefaultAlgorithms(), ","), Group: "providers",
			Help:  "Accepted JWS algorithms. `none` and `HS*` are never accepted.",
			Value: cli.Comma(prov(func(p *providerSettings) *[]string { return &p.Algorithms }), auth.CheckAlgorithms)},
		{Flag: "leeway", Key: "providers[].leeway", Default: "30s", Group: "providers",
			Help:  "Clock skew allowed on `exp`, `nbf` and `iat` (0s to 5m). `exp` is required.",
			Value: cli.Duration(prov(func(p *providerSettings) *time.Duration { return &p.Leeway }), auth.CheckLeeway)},
		{Flag: "jwks-refresh-interval", Key: "providers[].refresh_interval", Default: "15m", Group: "providers",
			Help:  "How often keys are fetched (at least 1m), each wait shortened by up to a tenth at random so replicas do not call the identity provider in step.",
			Value: cli.Duration(prov(func(p *providerSettings) *time.Duration { return &p.RefreshInterval }), cli.AtLeast(time.Minute))},
		{Flag: "max-staleness", Key: "providers[].max_staleness", Default: "0s", DefaultDoc: "`0` (never)", Group: "providers",
			Help:  "Readiness fails once the provider's keys were last fetched longer ago than this (at least twice the refresh interval).",
			Value: cli.Duration(prov(func(p *providerSettings) *time.Duration { return &p.MaxStaleness }), nil)},
		{Flag: "insecure-http", Key: "providers[].insecure_http", Default: "false", Group: "providers",
			Help:  "Allow plain `http` to the identity provider (the issuer for discovery, JWKS URLs, the discovered `jwks_uri`), for one inside the cluster that serves no TLS. Without it, keys are only fetched over `https`, or `http` to a loopback host (`localhost`, `127.0.0.0/8`, `::1`). Redirects are followed at most 5 times, and never from `https` to `http`, whatever this says.",
			Value: cli.Bool(prov(func(p *providerSettings) *bool { return &p.InsecureHTTP }))},
	}
}

// tokenDeclarations are the settings of the service tokens: the connection
// strings whose keys sign them, and what goes into them.
func tokenDeclarations() []cli.Setting[settings] {
	return []cli.Setting[settings]{
		{Flag: "connection-string", Key: "signalr.connection_strings", Meta: "STRING",
			Help:  "A connection string whose `AccessKey` may sign tokens, added to those the app's own settings in the environment hold (`AzureSignalRConnectionString`, `Azure__SignalR__Endpoints__*`, `WebPubSubConnectionString`) and to the file's list.",
			Value: cli.Item(top(func(s *settings) *[]string { return &s.SignalR.ConnectionStrings }))},
		{Flag: "connection-string-file", Key: "signalr.connection_string_files", Meta: "PATH", Path: true, Watch: true,
			Help:  "A file holding one connection string, such as a mounted Kubernetes Secret. Re-read when it changes (repeatable).",
			Value: cli.List(top(func(s *settings) *[]string { return &s.SignalR.ConnectionStringFiles }), true, nil)},
		{Flag: "forward-claim", Key: "tokens.forward_claims", Meta: "NAME",
			Help:  "Caller claims copied into the service token (repeatable), so that they reach the app in upstream events. Registered JWT names (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, `jti`) become `asrs.u.<name>`, as the Azure SDK writes them.",
			Value: cli.List(top(func(s *settings) *[]string { return &s.Tokens.ForwardClaims }), false, nil)},
		{Flag: "max-token-lifetime", Key: "tokens.max_token_lifetime", Default: "0s", DefaultDoc: "`0` (keep)",
			Help:  "Cap on the service token's lifetime, counted from its `iat`.",
			Value: cli.Duration(top(func(s *settings) *time.Duration { return &s.Tokens.MaxTokenLifetime }), nil)},
		{Flag: "bind-to-caller-expiry", Key: "tokens.bind_to_caller_expiry", Default: "false",
			Help:  "The service token never outlives the caller's token.",
			Value: cli.Bool(top(func(s *settings) *bool { return &s.Tokens.BindToCallerExpiry }))},
		{Flag: "close-on-caller-expiry", Key: "tokens.close_on_caller_expiry", Default: "false",
			Help:  "Also set `asrs.s.coae`/`asrs.s.aeo`, which ask the service to close the connection when the caller's token expires. Needs `bind_to_caller_expiry`.",
			Value: cli.Bool(top(func(s *settings) *bool { return &s.Tokens.CloseOnCallerExpiry }))},
		{Flag: "max-token-length", Key: "tokens.max_token_length", Default: "0", DefaultDoc: "`0` (the service's)",
			Help:  "Longest service token produced; a longer one is refused with 502 (`too_long`). `0` means 4096 for `signalr`, the limit Azure SignalR Service enforces (512 to 4096 may be set), and 16384 for `webpubsub`, which documents no limit (512 to 32768 may be set).",
			Value: cli.Int(top(func(s *settings) *int { return &s.Tokens.MaxTokenLength }), checkTokenLength)},
	}
}

// command is the sidecar's command line, or check's with its --token.
func command(check bool) *cli.Command[settings] {
	c := &cli.Command[settings]{
		Name:      "negotiate-sidecar",
		Usage:     "Usage: negotiate-sidecar [flags]\n       negotiate-sidecar check [flags] [--token JWT]\n       negotiate-sidecar demo [--user ID] [-v]\n       negotiate-sidecar version\n\nAuthenticates callers' JWTs and puts their verified id into the Azure SignalR\nService or Web PubSub token of the app's negotiate answers.",
		EnvPrefix: envPrefix,
		Config:    "config",
		ArgHint:   "the subcommands are check, demo and version, and flags start with --",
		Settings:  declarations(),
		Groups: map[string]cli.Group[settings]{"providers": {
			Add: func(s *settings) int {
				s.Providers = append(s.Providers, providerSettings{})
				return len(s.Providers) - 1
			},
			Len: func(s *settings) int { return len(s.Providers) },
			Shared: func(names []string, n int) error {
				return fmt.Errorf("%s (flags or NEGOTIATE_SIDECAR_* variables) describe a single identity provider, but the configuration file lists %d; set them in the file instead", strings.Join(names, ", "), n)
			},
		}},
	}
	if check {
		c.Name = "negotiate-sidecar check"
		c.Usage = "Usage: negotiate-sidecar check [flags] [--token JWT]\n\nValidates the configuration, contacts the identity providers and the app, and reports\none line per check. Exits non-zero if anything failed."
		c.ArgHint = "negotiate-sidecar check takes no arguments, and flags start with --"
		c.Settings = append(c.Settings, cli.Setting[settings]{Flag: "token", Meta: "JWT", NoEnv: true,
			Help:  "A caller's JWT, judged as the sidecar would judge it.",
			Value: cli.String(top(func(s *settings) *string { return &s.token }), nil)})
	}
	return c
}

// loadSettings resolves the configuration from the command line, the
// environment and the configuration file, fills in what derives from other
// settings, and validates it. It returns cli.ErrHelp, a *cli.UsageError, or
// every problem at once, each naming the setting as the user gave it.
func loadSettings(args []string, env environment, check bool) (settings, error) {
	c := command(check)
	s, l, err := c.Load(args, env)
	s.configFile = l.File
	var ue *cli.UsageError
	if err != nil && (errors.Is(err, cli.ErrHelp) || errors.As(err, &ue)) {
		return s, err
	}
	if l.Unusable {
		return s, err
	}
	fillDefaults(&s)
	problems := []error{err}
	problems = append(problems, c.Validate(&s, l)...)
	problems = append(problems, validate(s, l, env)...)
	return s, errors.Join(problems...)
}

// fillDefaults fills in the defaults that derive from other settings, and
// those of a list or name the file gave empty.
func fillDefaults(s *settings) {
	for i := range s.Providers {
		p := &s.Providers[i]
		if p.Name == "" {
			p.Name = defaultProviderName(p.Issuer, i)
		}
		if len(p.Algorithms) == 0 {
			p.Algorithms = auth.DefaultAlgorithms()
		}
		if p.UserClaim == "" {
			p.UserClaim = "sub"
		}
	}
}

// validate checks what concerns several settings together, each rule where
// the package that uses the settings keeps it; the connection strings are
// read too, so that one run reports every problem.
func validate(s settings, l *cli.Loaded, env environment) []error {
	var problems []error
	add := func(err error) {
		if err != nil {
			problems = append(problems, err)
		}
	}
	if len(s.Providers) == 0 {
		add(errors.New("no identity provider: give --issuer and --audience, or list providers: in the configuration file"))
	}
	var ps []auth.Provider
	for i, p := range s.Providers {
		ps = append(ps, p.authProvider(nil))
		// A JWKS file alone is read when the sidecar starts.
		if p.JWKSFile == "" || len(p.JWKSURLs) > 0 {
			if err := p.keySources().Check(); err != nil {
				add(fmt.Errorf("provider %q: %w", p.Name, err))
			}
		}
		if p.MaxStaleness < 0 || (p.MaxStaleness > 0 && p.MaxStaleness < 2*p.RefreshInterval) {
			add(fmt.Errorf("%s: must be 0 (never) or at least twice the refresh interval (%s)", l.Origin("providers[].max_staleness", i), p.RefreshInterval))
		}
	}
	if len(ps) > 0 {
		// The fields were judged one by one above; what is left is
		// whether the providers can stand together.
		add(auth.CheckDistinct(ps))
	}
	if format, err := rewrite.FormatByName(s.Service); err == nil {
		add(rewrite.CheckOptions(format, s.rewriteOptions()))
	}
	_, err := endpoints(s, env)
	add(err)
	return problems
}

// rewriteOptions are the token settings as the rewriter takes them.
func (s settings) rewriteOptions() rewrite.Options {
	return rewrite.Options{
		ForwardClaims:       s.Tokens.ForwardClaims,
		MaxTokenLifetime:    s.Tokens.MaxTokenLifetime,
		BindToCallerExpiry:  s.Tokens.BindToCallerExpiry,
		CloseOnCallerExpiry: s.Tokens.CloseOnCallerExpiry,
		MaxTokenLength:      s.Tokens.MaxTokenLength,
	}
}

func checkUpstreamURL(v string) error {
	if v == "" {
		return errors.New("required: the app's address in the pod, such as http://127.0.0.1:80 (--upstream, or upstream: in the file)")
	}
	u, err := url.Parse(v)
	if err != nil {
		return proxy.CheckUpstream(nil)
	}
	return proxy.CheckUpstream(u)
}

func checkService(v string) error {
	_, err := rewrite.FormatByName(v)
	return err
}

func checkNegotiatePaths(paths []string) error {
	_, err := proxy.NewMatcher(paths)
	return err
}

func checkTokenLength(n int) error {
	if n != 0 && (n < minTokenLength || n > maxTokenLength) {
		return fmt.Errorf("choose 0 (the service's limit) or from %d to %d", minTokenLength, maxTokenLength)
	}
	return nil
}

func positive(d time.Duration) error {
	if d <= 0 {
		return errors.New("must be positive")
	}
	return nil
}

func oneOf(choices ...string) func(string) error {
	return func(v string) error {
		if !slices.Contains(choices, v) {
			return fmt.Errorf("choose %s", strings.Join(choices, " or "))
		}
		return nil
	}
}

// defaultProviderName names a provider after its issuer's host, which reads
// well in metrics ("login.microsoftonline.com").
func defaultProviderName(issuer string, i int) string {
	if u, err := url.Parse(issuer); err == nil && u.Host != "" {
		return u.Host
	}
	return "provider-" + strconv.Itoa(i+1)
}
