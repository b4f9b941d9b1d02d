package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/golang-jwt/jwt/v5"

	"github.com/negotiate-sidecar/negotiate-sidecar/auth"
	"github.com/negotiate-sidecar/negotiate-sidecar/cmd/internal/cli"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite/entra"
)

// errCheckFailed makes check exit non-zero after its report said why.
var errCheckFailed = errors.New("check found problems; see the report above")

// report prints one line per check, and under a failure what to do.
type report struct {
	w        io.Writer
	problems int
}

func (r *report) ok(subject, format string, args ...any) {
	fmt.Fprintf(r.w, "ok    %-28s %s\n", subject, fmt.Sprintf(format, args...))
}

func (r *report) fail(subject, what, todo string) {
	r.problems++
	// One line per check keeps the report a table.
	what = strings.ReplaceAll(what, "\n", "; ")
	fmt.Fprintf(r.w, "FAIL  %-28s %s\n", subject, what)
	if todo != "" {
		fmt.Fprintf(r.w, "      %-28s -> %s\n", "", todo)
	}
}

// runCheck validates the configuration as the sidecar would read it, then
// contacts everything the sidecar depends on, and prints a readable report.
// With --token it also judges that token as the sidecar would.
func runCheck(ctx context.Context, args []string, env environment, stdout, stderr io.Writer) error {
	r := &report{w: stdout}
	s, err := loadSettings(args, env, true)
	if errors.Is(err, cli.ErrHelp) {
		command(true).Help(stdout)
		return nil
	}
	if err != nil {
		var ue *cli.UsageError
		if errors.As(err, &ue) {
			return err // the command line itself did not parse
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			r.fail("configuration", line, "")
		}
		fmt.Fprintf(stdout, "\n%d problem(s) in the configuration; fix them and run check again.\n", r.problems)
		return errCheckFailed
	}
	where := "flags and environment"
	if s.configFile != "" {
		where = s.configFile + ", flags and environment"
	}
	r.ok("configuration", "read from %s: %d provider(s), service %s", where, len(s.Providers), s.Service)

	client := &http.Client{Timeout: 10 * time.Second}
	var providers []auth.Provider
	for _, ps := range s.Providers {
		if p, ok := checkProvider(ctx, r, ps, client); ok {
			providers = append(providers, p)
		}
	}

	eps, _ := endpoints(s, env) // validated with the settings
	eps = checkEntra(ctx, r, formatOf(s.Service), eps, env)
	checkEndpoints(r, s, eps, time.Now())

	checkUpstream(ctx, r, s.Upstream, client)

	if s.token != "" {
		checkToken(r, s.token, providers, len(providers) == len(s.Providers))
	}
	if r.problems > 0 {
		fmt.Fprintf(stdout, "\n%d problem(s) found.\n", r.problems)
		return errCheckFailed
	}
	fmt.Fprintln(stdout, "\nAll checks passed.")
	return nil
}

// checkProvider fetches the provider's keys once and reports how it went.
func checkProvider(ctx context.Context, r *report, ps providerSettings, client *http.Client) (auth.Provider, bool) {
	subject := fmt.Sprintf("provider %q", ps.Name)
	cfg, err := ps.keySetConfig(client)
	if err != nil {
		r.fail(subject, err.Error(), "check jwks_file / --jwks-file")
		return auth.Provider{}, false
	}
	ks, err := auth.NewKeySet(cfg)
	if err != nil {
		r.fail(subject, err.Error(), "a JWKS file must hold {\"keys\": [...]} with at least one public signature key")
		return auth.Provider{}, false
	}
	if err := ks.Refresh(ctx); err != nil {
		for _, e := range splitJoined(err) {
			r.fail(subject, e.Error(), providerHint(e))
		}
		return auth.Provider{}, false
	}
	source := "JWKS file " + ps.JWKSFile
	switch {
	case len(ps.JWKSURLs) > 0:
		source = "JWKS " + strings.Join(ps.JWKSURLs, ", ")
	case len(cfg.Static) == 0:
		source = "discovery at " + strings.TrimSuffix(ps.Issuer, "/") + "/.well-known/openid-configuration"
	}
	r.ok(subject, "%d key(s) from %s; issuer %s, audiences %s, user claim %q", ks.Count(), source, ps.Issuer, strings.Join(ps.Audiences, ","), ps.UserClaim)
	return ps.authProvider(ks), true
}

// providerHint says what to do about a failed fetch of a provider's keys,
// by the kind of failure.
func providerHint(err error) string {
	var status *auth.StatusError
	switch {
	case errors.Is(err, auth.ErrInsecureHTTP):
		return "use https; only for an identity provider inside the cluster without TLS, set insecure_http: true (--insecure-http)"
	case errors.Is(err, auth.ErrRedirectDowngrade):
		return "the identity provider redirects from https to plain http; configure the https URL the keys are finally served from (jwks_urls, --jwks-url)"
	case errors.Is(err, auth.ErrIssuerMismatch):
		return "set issuer to the iss value your tokens carry, exactly, trailing slash included"
	case errors.Is(err, auth.ErrDiscovery) && errors.As(err, &status) && status.Code == http.StatusNotFound:
		return "the issuer URL has no discovery document; check the issuer, or give the JWKS location with --jwks-url"
	case errors.Is(err, auth.ErrDiscovery):
		return "check the issuer URL and that this machine can reach it, or give --jwks-url"
	case errors.Is(err, auth.ErrNotJWKS):
		return "the URL does not serve a JWKS; check --jwks-url"
	default:
		return "check the URL and that this machine (and the pod) can reach it; the sidecar keeps retrying, but refuses negotiate until keys load"
	}
}

// checkHub is the hub of the tokens checkEndpoints builds; any name does.
const checkHub = "check"

// checkEndpoints hands the rewriter, for each endpoint and key, the body the
// app's SDK issues with that key (its aud and url built as the SDK builds
// them), as the proxy would on a negotiate, and confirms it resolves to that
// endpoint and key and is rewritten. A setup whose negotiates the proxy would
// all refuse fails here rather than in production.
func checkEndpoints(r *report, s settings, endpoints []rewrite.Endpoint, now time.Time) {
	if len(endpoints) == 0 {
		return
	}
	format := formatOf(s.Service)
	rw, err := rewrite.New(format, rewrite.Keys(endpoints), rewrite.Options{MaxTokenLength: s.Tokens.MaxTokenLength})
	if err != nil {
		r.fail("endpoints", err.Error(), "")
		return
	}
	for _, e := range endpoints {
		if e.Entra == nil {
			checkEndpoint(r, format, rw, e, now)
		}
	}
}

// heldKey is a KeySource holding the one key check fetched.
type heldKey rewrite.SigningKey

func (k heldKey) SigningKey() (rewrite.SigningKey, error) { return rewrite.SigningKey(k), nil }

// checkEntra gets, for each endpoint the app reaches with Microsoft Entra
// ID, a key of the sidecar's own once, as the sidecar would at start, or for
// Web PubSub a client token from the service, as the sidecar would on a
// negotiate, and reports how it went. It returns the endpoints that passed,
// each holding its key or token client, and those with access keys.
func checkEntra(ctx context.Context, r *report, format rewrite.Format, eps []rewrite.Endpoint, env environment) []rewrite.Endpoint {
	var out []rewrite.Endpoint
	for _, e := range eps {
		if e.Entra == nil {
			out = append(out, e)
			continue
		}
		subject := "endpoint " + e.Hosts[0]
		cred, desc, err := entra.Credential(e.Entra, entraOptions(env))
		if err != nil {
			r.fail(subject, fmt.Sprintf("%s: %v", e.Entra.Source, err), "fix the identity settings; they must be those the app uses")
			continue
		}
		if format.EntraIssuesTokens {
			if tc := checkTokenClient(ctx, r, subject, e.Entra, cred, desc); tc != nil {
				e.Issuer = tc
				out = append(out, e)
			}
			continue
		}
		// One attempt: the credential retries on its own, and a report
		// should not keep its reader waiting for the SDK's schedule.
		src, err := entra.NewSource(entra.Config{Entra: e.Entra, Credential: cred, Description: desc, Client: &http.Client{Timeout: 30 * time.Second}, Attempts: 1})
		if err != nil {
			r.fail(subject, fmt.Sprintf("%s: %v", e.Entra.Source, err), "")
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		key, err := src.Fetch(fctx)
		cancel()
		if err != nil {
			r.fail(subject, err.Error(), entraHint(err))
			continue
		}
		r.ok(subject, "Microsoft Entra ID as %s (from %s): got key %q from %s; the app's tokens are signed again with it", desc, e.Entra.Source, key.ID, e.Entra.KeyURL())
		e.Source = heldKey(key)
		out = append(out, e)
	}
	return out
}

// checkHubUser is the hub and user of the client token check asks a Web
// PubSub service for.
const checkHubUser = "check"

// checkTokenClient asks the Web PubSub service for one client token, for a
// minute, as the sidecar would on a negotiate, and reports how it went.
func checkTokenClient(ctx context.Context, r *report, subject string, e *rewrite.Entra, cred azcore.TokenCredential, desc string) *entra.TokenClient {
	tc, err := entra.NewTokenClient(entra.IssuerConfig{Entra: e, Credential: cred, Description: desc, Client: &http.Client{Timeout: 30 * time.Second}})
	if err != nil {
		r.fail(subject, fmt.Sprintf("%s: %v", e.Source, err), "")
		return nil
	}
	ictx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := tc.IssueToken(ictx, rewrite.TokenRequest{Hub: checkHubUser, UserID: checkHubUser, Minutes: 1}); err != nil {
		r.fail(subject, err.Error(), entraHint(err))
		return nil
	}
	r.ok(subject, "Microsoft Entra ID as %s (from %s): the service issued a client token; on each negotiate the sidecar asks it for one for the caller", desc, e.Source)
	return tc
}

// entraHint says what to do when the sidecar could not get its own key, or
// a token from the Web PubSub service.
func entraHint(err error) string {
	var ae *entra.APIError
	var te *entra.TokenError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusForbidden:
		return fmt.Sprintf("assign the identity the %q role on the %s resource (az role assignment create --role %q ...), wait up to 30 minutes, and check again", ae.Role(), ae.Resource(), ae.Role())
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		return "the token is for another tenant or audience; check " + ae.TenantSetting() + " / AZURE_TENANT_ID"
	case errors.As(err, &ae) && ae.Status == 0:
		return "check that this machine (and the pod) can reach the endpoint"
	case errors.As(err, &ae) && ae.IssuesTokens():
		return "until the service issues tokens, every negotiate is refused with 502 (reason issue)"
	case errors.As(err, &te):
		return signInHint(te.Identity)
	}
	return "the sidecar keeps retrying every 5 minutes, and is not ready until it holds a key"
}

// signInHint says what to look at when the identity, as entra.Credential
// describes it, got no Microsoft Entra token.
func signInHint(identity string) string {
	switch {
	case strings.HasPrefix(identity, "workload identity"):
		return "the identity could not sign in with the pod's federated token: check that the identity's federated credential names the cluster's OIDC issuer and the subject system:serviceaccount:<namespace>:<ServiceAccount> of this pod"
	case strings.HasPrefix(identity, "system-assigned managed identity"), strings.HasPrefix(identity, "managed identity"):
		return "the managed identity endpoint gave no token: assign the identity to the host (a user-assigned one named by its client id); in AKS with workload identity, give the app and the sidecar AuthType=azure or credential=workloadidentity instead"
	case strings.HasPrefix(identity, "service principal"):
		return "the service principal could not sign in: check TenantId, ClientId and that the secret or certificate is current"
	}
	return "the identity could not sign in: in AKS check the workload identity label and ServiceAccount annotation; elsewhere that the managed identity is assigned to the host"
}

// checkEndpoint is checkEndpoints for one endpoint.
func checkEndpoint(r *report, format rewrite.Format, rw *rewrite.Rewriter, e rewrite.Endpoint, now time.Time) {
	subject := "endpoint " + e.Hosts[0]
	failed := false
	var shared, sources []string
	for _, k := range e.Keys {
		sources = append(sources, k.Source)
		what := "a token the app's SDK issues with the key from " + k.Source
		body, err := format.SDKBody(k.ConnectionString, checkHub, now)
		var got rewrite.Key
		if err == nil {
			got, err = rw.Resolve(body)
		}
		if err == nil {
			_, err = rw.Rewrite(body, rewrite.Caller{UserID: "check"})
		}
		switch {
		case err != nil:
			failed = true
			r.fail(subject, fmt.Sprintf("%s would be refused: %v", what, err), endpointHint(err))
		case !bytes.Equal(got.Secret, k.Secret):
			failed = true
			r.fail(subject, fmt.Sprintf("%s resolves to another key, of endpoint %s", what, got.Endpoint), "give each endpoint its own connection strings; the sidecar cannot tell these apart")
		case got.Endpoint != e.URL && !slices.Contains(shared, got.Endpoint):
			// Same key, same host and client URL: whichever endpoint
			// is chosen, the same key signs.
			shared = append(shared, got.Endpoint)
		}
	}
	if failed {
		return
	}
	note := ""
	if len(shared) > 0 {
		note = fmt.Sprintf(" (indistinguishable from %s, which has the same key)", strings.Join(shared, ", "))
	}
	r.ok(subject, "%d key(s), from %s; tokens the app's SDK issues for it are accepted%s", len(e.Keys), strings.Join(sources, ", "), note)
}

// endpointHint says what to do about a refusal of an SDK's token.
func endpointHint(err error) string {
	var re *rewrite.Error
	if errors.As(err, &re) && re.Reason == rewrite.ReasonTooLong {
		return "the app's tokens alone exceed --max-token-length; raise it, or leave it at 0 for the service's limit"
	}
	return "every negotiate for this endpoint would be answered 502; the connection strings the sidecar reads do not match what the app's SDK issues"
}

// checkUpstream tells whether the app answers at all; any HTTP status will do.
func checkUpstream(ctx context.Context, r *report, upstream string, client *http.Client) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, upstream, nil)
	if err == nil {
		start := time.Now()
		var resp *http.Response
		if resp, err = client.Do(req); err == nil {
			resp.Body.Close()
			r.ok("upstream", "%s answered %s in %s", upstream, resp.Status, time.Since(start).Round(time.Millisecond))
			return
		}
	}
	r.fail("upstream", fmt.Sprintf("%s: %v", upstream, err), "start the app, or point --upstream at the port it listens on in the pod")
}

// checkToken judges a token as the sidecar would, and explains a refusal
// with what the token says against what is configured.
func checkToken(r *report, token string, providers []auth.Provider, complete bool) {
	token = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(token), "Bearer "))
	if len(providers) == 0 {
		r.fail("token", "no provider could be loaded, so the token cannot be judged", "fix the providers above first")
		return
	}
	a, err := auth.New(auth.Config{Providers: providers})
	if err != nil {
		r.fail("token", err.Error(), "")
		return
	}
	id, err := a.Authenticate([]string{"Bearer " + token})
	if err == nil {
		left := time.Until(id.Expiry).Round(time.Second)
		r.ok("token", "accepted by provider %q: user id %q, expires in %s", id.Provider, id.UserID, left)
		return
	}
	var ae *auth.Error
	if !errors.As(err, &ae) {
		r.fail("token", err.Error(), "")
		return
	}
	r.fail("token", fmt.Sprintf("refused (%s): %v", ae.Reason, ae.Err), tokenHint(token, ae, providers, complete))
}

// tokenHint explains a refusal with what the token says against what is
// configured: complete is false when some providers failed to load.
func tokenHint(token string, ae *auth.Error, providers []auth.Provider, complete bool) string {
	claims := jwt.MapClaims{}
	unverified, _, _ := jwt.NewParser().ParseUnverified(token, claims)
	var p *auth.Provider
	for i := range providers {
		if providers[i].Name == ae.Provider {
			p = &providers[i]
		}
	}
	todo := ""
	switch ae.Reason {
	case auth.ReasonIssuer:
		var issuers []string
		for _, p := range providers {
			issuers = append(issuers, p.Issuer)
		}
		todo = fmt.Sprintf("the token's iss is %q; configured issuers: %s", claims["iss"], strings.Join(issuers, ", "))
		if !complete {
			todo += " (some providers failed to load above)"
		}
	case auth.ReasonAudience:
		todo = fmt.Sprintf("the token's aud is %v; provider %q accepts %s: add the token's audience with --audience, or request tokens for one of these", claims["aud"], ae.Provider, strings.Join(p.Audiences, ", "))
	case auth.ReasonExpired:
		if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
			todo = fmt.Sprintf("the token expired at %s; get a fresh one", exp.UTC().Format(time.RFC3339))
		}
	case auth.ReasonUnknownKey:
		todo = "the token's kid is not in the provider's JWKS: was it issued by another tenant or environment?"
	case auth.ReasonAlgorithm:
		todo = fmt.Sprintf("accepted algorithms: %s", strings.Join(p.Algorithms, ","))
	case auth.ReasonCrit:
		var crit any
		if unverified != nil {
			crit = unverified.Header["crit"]
		}
		todo = fmt.Sprintf("the token's header has crit %q: extensions the sidecar must understand, and it understands none; have the identity provider issue tokens without crit", fmt.Sprint(crit))
	case auth.ReasonUserClaim:
		names := slices.Sorted(func(yield func(string) bool) {
			for k := range claims {
				if !yield(k) {
					return
				}
			}
		})
		todo = fmt.Sprintf("choose --user-claim among the token's claims: %s", strings.Join(names, ", "))
	}
	return todo
}

// splitJoined returns the errors inside an errors.Join, or err alone.
func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
