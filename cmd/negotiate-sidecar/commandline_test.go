package main

import (
	"context"
	"runtime/debug"
	"strings"
	"testing"
)

// TestCommandLineConventions: every command prints its help to stdout and
// succeeds for -h and --help, refuses arguments that are not flags, and
// says in one line which flag it does not know, with the closest one.
func TestCommandLineConventions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantOut string // in stdout
		wantErr string // the error, exactly; "" none
	}{
		{"main help", []string{"--help"}, nil, "Usage: negotiate-sidecar [flags]", ""},
		{"main short help", []string{"-h"}, nil, "--upstream URL", ""},
		{"check help", []string{"check", "-h"}, nil, "--token JWT", ""},
		{"demo help", []string{"demo", "--help"}, nil, "--user ID", ""},
		{"version help", []string{"version", "--help"}, nil, "Usage: negotiate-sidecar version", ""},
		{"--version", []string{"--version"}, nil, "negotiate-sidecar ", ""},
		{"version", []string{"version"}, nil, "negotiate-sidecar ", ""},
		{"main stray argument", []string{"serve"}, nil, "", `unexpected argument "serve"; the subcommands are check, demo and version, and flags start with --`},
		{"check stray argument", []string{"check", "now"}, nil, "", `unexpected argument "now"; negotiate-sidecar check takes no arguments, and flags start with --`},
		{"demo stray argument", []string{"demo", "alice"}, nil, "", `unexpected argument "alice"; negotiate-sidecar demo takes no arguments, and flags start with --`},
		{"version stray argument", []string{"version", "--short"}, nil, "", "unknown flag --short; negotiate-sidecar version --help lists the flags"},
		{"unknown flag", []string{"--upstrem", "http://127.0.0.1:80"}, nil, "", "unknown flag --upstrem (did you mean --upstream?); negotiate-sidecar --help lists the flags"},
		{"unknown demo flag", []string{"demo", "--users", "x"}, nil, "", "unknown flag --users (did you mean --user?); negotiate-sidecar demo --help lists the flags"},
		{"empty demo user", []string{"demo", "--user", ""}, nil, "", `--user="": the demo user needs an id; give one such as --user alice, or leave --user out for user-42`},
		{"unknown variable", nil, map[string]string{"NEGOTIATE_SIDECAR_UPSTREM": "http://127.0.0.1:80"}, "", "unknown variable NEGOTIATE_SIDECAR_UPSTREM (did you mean NEGOTIATE_SIDECAR_UPSTREAM?)"},
		{"log level from a variable", nil, map[string]string{"NEGOTIATE_SIDECAR_LOG_LEVEL": "bogus"}, "", `NEGOTIATE_SIDECAR_LOG_LEVEL="bogus": choose debug, info, warn or error`},
		{"duration from a variable", nil, map[string]string{"NEGOTIATE_SIDECAR_NEGOTIATE_TIMEOUT": "5"}, "", `NEGOTIATE_SIDECAR_NEGOTIATE_TIMEOUT="5": not a duration; use a duration such as 30s, 5m or 1h`},
		{"boolean flag", []string{"--insecure-http=yes please"}, nil, "", `--insecure-http="yes please": not a boolean; use true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			err := run(context.Background(), tt.args, environ(tt.env), &stdout, &stderr)
			got := errString(err)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %q", got)
			case tt.wantErr != "" && !strings.Contains(got, tt.wantErr):
				t.Fatalf("error %q, want %q in it", got, tt.wantErr)
			case (strings.HasPrefix(tt.wantErr, "unknown flag") || strings.HasPrefix(tt.wantErr, "unexpected")) && got != tt.wantErr:
				t.Errorf("a command line error takes one line: %q", got)
			}
			if !strings.Contains(stdout.String(), tt.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tt.wantOut, stdout.String())
			}
			if stderr.String() != "" {
				t.Errorf("stderr: %s", stderr.String())
			}
		})
	}
}

// TestVersionOf: -X main.version wins, as the Dockerfile sets it; else the
// module version go install records; a build from a checkout is "dev".
func TestVersionOf(t *testing.T) {
	installed := &debug.BuildInfo{Main: debug.Module{Path: "github.com/negotiate-sidecar/negotiate-sidecar", Version: "v1.4.0"}}
	local := &debug.BuildInfo{Main: debug.Module{Path: "github.com/negotiate-sidecar/negotiate-sidecar", Version: "(devel)"}}
	for _, tt := range []struct {
		ldflags string
		info    *debug.BuildInfo
		ok      bool
		want    string
	}{
		{"0.1.0", installed, true, "0.1.0"},
		{"dev", installed, true, "v1.4.0"},
		{"dev", local, true, "dev"},
		{"dev", nil, false, "dev"},
	} {
		if got := versionOf(tt.ldflags, tt.info, tt.ok); got != tt.want {
			t.Errorf("versionOf(%q, %v) = %q, want %q", tt.ldflags, tt.info, got, tt.want)
		}
	}
}
