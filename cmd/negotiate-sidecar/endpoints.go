package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite/entra"
)

// endpoints gathers every connection string the sidecar trusts (those the
// app finds in the environment, the configuration's own and the contents of
// each connection string file) and groups their keys by endpoint. Every
// problem is reported at once.
func endpoints(s settings, env environment) ([]rewrite.Endpoint, error) {
	format := formatOf(s.Service)
	css, err := format.Collect(rewrite.Sources{Env: env, Inline: s.SignalR.ConnectionStrings, Files: s.SignalR.ConnectionStringFiles})
	if len(css) == 0 && err == nil {
		return nil, fmt.Errorf("no connection string: set %s (the app's own setting), --connection-string or --connection-string-file", format.AppSetting())
	}
	eps, perr := format.Endpoints(css)
	return eps, errors.Join(err, perr)
}

// formatOf is the token format of a service name. A name that is not one
// (reported by the validation) reads as signalr, so that the connection
// strings are still checked in the same run.
func formatOf(service string) rewrite.Format {
	if f, err := rewrite.FormatByName(service); err == nil {
		return f
	}
	return rewrite.SignalR()
}

// entraOptions are how the sidecar's credentials reach Microsoft Entra ID.
// A custom authority host (AZURE_AUTHORITY_HOST, read by azidentity itself)
// is one login.microsoftonline.com knows nothing of, so the authority
// metadata request it would answer is skipped.
func entraOptions(env environment) entra.Options {
	return entra.Options{
		DisableInstanceDiscovery: env["AZURE_AUTHORITY_HOST"] != "",
		Getenv:                   func(k string) string { return env[k] },
	}
}

// endpointSummary describes endpoints for logs: hosts and key sources, never keys.
func endpointSummary(es []rewrite.Endpoint) []string {
	var out []string
	for _, e := range es {
		if e.Entra != nil {
			out = append(out, fmt.Sprintf("%s (Microsoft Entra ID, from %s)", strings.Join(e.Hosts, ","), e.Entra.Source))
			continue
		}
		var sources []string
		for _, k := range e.Keys {
			sources = append(sources, k.Source)
		}
		out = append(out, fmt.Sprintf("%s (%d key(s) from %s)", strings.Join(e.Hosts, ","), len(e.Keys), strings.Join(sources, ", ")))
	}
	return out
}
