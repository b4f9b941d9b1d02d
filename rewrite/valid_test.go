package rewrite

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidJSON(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, s := range []string{
		``, ` `, `{}`, ` {} `, `[]`, `[1,2]`, `[1,]`, `{"a":1}`, `{"a":1,}`, `{"a" : [true, false, null] }`,
		`{"a"}`, `{"a":}`, `{1:2}`, `"x"`, `"\u00e9\n\"\\\/"`, `"\x"`, `"\u12"`, `"\u12g4"`, "\"a\x01\"", "\"\xff\"",
		`0`, `-0`, `01`, `-`, `1.`, `1.5e`, `1.5e+7`, `-12.5E-3`, `1e5x`, `tru`, `true`, `truex`, `nul`, `null `,
		`{"a":1}{}`, `[1 2]`, `{"a":1 "b":2}`, `]`, `}`, `[}`, `{]`, `{"a":[}]}`, "\t\r\n[ ]\n",
		deep(maxNestingDepth), deep(maxNestingDepth + 1), `{"a":` + deep(maxNestingDepth-1) + `}`, `{"a":` + deep(maxNestingDepth) + `}`,
	} {
		if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("validJSON(%.40q) = %v, json.Valid says %v", s, got, want)
		}
	}
}

// FuzzValidJSON holds validJSON to json.Valid.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,-2.5e3,"x\u0041\n",true,false,null,{}]}`, `[`, `"\`, `-0.0E+1`, `{"a" :1 , "b":[ ] }`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := validJSON(data), json.Valid(data); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", data, got, want)
		}
	})
}
