package entra

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParseAnswer: whatever the key API answers, parseAnswer returns both
// values exactly as the JSON holds them, or an error that quotes nothing of
// the answer.
func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{
		`{"KeyId":"k","AccessKey":"secret"}`,
		`{"KeyId":"k","AccessKey":""}`,
		`{"keyId":"k","AccessKey":"secret"}`,
		`{"KeyId":1,"AccessKey":"secret"}`,
		`[]`, `null`, `{"KeyId":"k","AccessKey":"a\u0000b","KeyId":"j"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		key, err := parseAnswer(body)
		if err != nil {
			for _, fixed := range []string{"the answer is not a JSON object", "the answer has no KeyId string", "the answer has no AccessKey string"} {
				if err.Error() == fixed {
					return
				}
			}
			t.Fatalf("unexpected error text %q", err)
		}
		var want struct{ KeyId, AccessKey string }
		if jerr := json.Unmarshal(body, &want); jerr != nil {
			t.Fatalf("accepted an answer encoding/json refuses: %v", jerr)
		}
		if key.ID == "" || len(key.Secret) == 0 {
			t.Fatal("accepted an empty key id or key")
		}
		// encoding/json matches names case-insensitively and takes the last
		// duplicate; parseAnswer must agree where the exact names are used.
		if !strings.Contains(string(body), `"KeyId"`) || !strings.Contains(string(body), `"AccessKey"`) {
			t.Fatal("accepted an answer without the exact member names")
		}
	})
}
