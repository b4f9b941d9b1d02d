// Package rewrite stamps a verified user id into the service access token of a
// negotiate response body, after proving the token was signed with a key we
// hold, and signs it again with that key.
package rewrite
