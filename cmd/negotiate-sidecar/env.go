package main

import "strings"

// environment is the process environment as given to run, so that tests can
// pass their own and nothing reads os.Getenv behind their back.
type environment map[string]string

// newEnvironment reads KEY=VALUE entries as os.Environ returns them.
func newEnvironment(entries []string) environment {
	env := environment{}
	for _, e := range entries {
		if k, v, ok := strings.Cut(e, "="); ok {
			env[k] = v
		}
	}
	return env
}
