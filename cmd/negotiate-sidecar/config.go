package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
)

// envPrefix prefixes the environment variable that stands for each flag:
// --jwks-url is NEGOTIATE_SIDECAR_JWKS_URL.
const envPrefix = "NEGOTIATE_SIDECAR_"

// config is the sidecar's configuration, from flags and the environment.
type config struct {
	listen           string
	adminListen      string
	upstream         string
	issuer           string
	jwksURLs         []string
	jwksFile         string
	audiences        []string
	userClaim        string
	algorithms       []string
	leeway           time.Duration
	connectionString string
	negotiatePaths   []string
	logLevel         string
	logFormat        string
	shutdownTimeout  time.Duration
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

// commaFlag is a flag holding a comma-separated list, replaced as a whole.
type commaFlag struct{ values *[]string }

func (c commaFlag) String() string {
	if c.values == nil {
		return ""
	}
	return strings.Join(*c.values, ",")
}

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

// parseConfig reads flags, then fills each flag not given on the command
// line from its NEGOTIATE_SIDECAR_* variable. Every problem is reported at
// once, each with what to do about it.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{
		algorithms: append([]string(nil), auth.DefaultAlgorithms...),
	}
	fs := flag.NewFlagSet("negotiate-sidecar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", ":8080", "address for the proxy `address` that clients and the Kubernetes Service reach")
	fs.StringVar(&c.adminListen, "admin-listen", ":9090", "`address` for /healthz, /readyz and /metrics")
	fs.StringVar(&c.upstream, "upstream", "", "the app's base `URL`, such as http://127.0.0.1:80 (required)")
	fs.StringVar(&c.issuer, "issuer", "", "required iss of callers' tokens, exactly; without --jwks-url the JWKS is found by OIDC discovery at `URL`/.well-known/openid-configuration (required)")
	fs.Var(listFlag{&c.jwksURLs}, "jwks-url", "JWKS `URL` of the identity provider (repeatable)")
	fs.StringVar(&c.jwksFile, "jwks-file", "", "`path` of a static JWKS file, for offline use and tests")
	fs.Var(listFlag{&c.audiences}, "audience", "accepted aud of callers' tokens (repeatable; at least one required)")
	fs.StringVar(&c.userClaim, "user-claim", "sub", "claim holding the user id: a claim of exactly this `name`, else a dotted path into nested claims")
	fs.Var(commaFlag{&c.algorithms}, "algorithms", "accepted JWS algorithms, comma-separated")
	fs.DurationVar(&c.leeway, "leeway", 30*time.Second, "clock skew allowed on exp, nbf and iat")
	fs.StringVar(&c.connectionString, "connection-string", "", "Azure SignalR connection string (default: $AzureSignalRConnectionString, the setting the Functions app reads)")
	fs.Var(listFlag{&c.negotiatePaths}, "negotiate-path", "path `pattern` whose responses are rewritten, such as /api/*/negotiate (repeatable; default: any path ending in /negotiate)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "json", "log `format`: json or console")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long in-flight requests may take to finish after SIGTERM")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q; the subcommands are demo and version, and flags start with --", fs.Arg(0))
	}

	var problems []error
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := getenv(name)
		if v == "" {
			return
		}
		if _, repeatable := f.Value.(listFlag); repeatable {
			for _, item := range splitList(v) {
				_ = f.Value.Set(item)
			}
			return
		}
		if err := f.Value.Set(v); err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", name, err))
		}
	})
	if c.connectionString == "" {
		c.connectionString = getenv("AzureSignalRConnectionString")
	}

	if c.upstream == "" {
		problems = append(problems, errors.New("--upstream is required: the app's address in the pod, such as http://127.0.0.1:80"))
	} else if u, err := url.Parse(c.upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems = append(problems, fmt.Errorf("--upstream %q must be an absolute http or https URL, such as http://127.0.0.1:80", c.upstream))
	}
	if c.issuer == "" {
		problems = append(problems, errors.New("--issuer is required: the exact iss claim of your callers' tokens"))
	}
	if len(c.audiences) == 0 {
		problems = append(problems, errors.New("--audience is required: the aud your callers' tokens carry (repeat it to accept several)"))
	}
	if c.connectionString == "" {
		problems = append(problems, errors.New("no connection string: set AzureSignalRConnectionString (the app's own setting) or --connection-string"))
	}
	if c.logFormat != "json" && c.logFormat != "console" {
		problems = append(problems, fmt.Errorf("--log-format %q: choose json or console", c.logFormat))
	}
	if _, err := parseLevel(c.logLevel); err != nil {
		problems = append(problems, err)
	}
	if c.leeway < 0 || c.leeway > 5*time.Minute {
		problems = append(problems, fmt.Errorf("--leeway %s: choose a value from 0s to 5m", c.leeway))
	}
	if c.shutdownTimeout <= 0 {
		problems = append(problems, fmt.Errorf("--shutdown-timeout %s must be positive", c.shutdownTimeout))
	}
	return c, errors.Join(problems...)
}
