// Package proxy wires the request path: it strips forged identity headers,
// authenticates negotiate requests, forwards everything to the app, and has the
// negotiate response's token rewritten for the verified caller.
package proxy
