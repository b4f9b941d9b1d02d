package rewrite_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/negotiate-sidecar/negotiate-sidecar/rewrite"
)

// A negotiate body as the Functions binding returns it is verified with the
// AccessKey of the endpoint its token names, and comes back with the user id
// in asrs.s.uid and every other byte of the claims kept.
func Example() {
	const connectionString = "Endpoint=https://chat.service.signalr.net;AccessKey=ZXhhbXBsZS1rZXk=;Version=1.0;"
	cs, err := rewrite.ParseConnectionString(connectionString)
	if err != nil {
		panic(err)
	}
	fmt.Println(cs) // never shows the key

	key, err := rewrite.SignalR().Key(cs) // the key and hosts, as the SignalR SDK reads them
	if err != nil {
		panic(err)
	}
	r, err := rewrite.New(rewrite.SignalR(), []rewrite.Key{key}, rewrite.Options{})
	if err != nil {
		panic(err)
	}
	token := sign(`{"alg":"HS256","typ":"JWT"}`, `{"exp":1795766167,"aud":"https://chat.service.signalr.net/client/?hub=chat"}`, cs.AccessKey)
	body := `{"url":"https://chat.service.signalr.net/client/?hub=chat","accessToken":"` + token + `"}`

	out, err := r.Rewrite([]byte(body), rewrite.Caller{UserID: "alice"})
	if err != nil {
		panic(err)
	}
	newToken := strings.Split(string(out), `"accessToken":"`)[1]
	claims, _ := base64.RawURLEncoding.DecodeString(strings.Split(newToken, ".")[1])
	fmt.Println(string(claims))

	_, err = r.Rewrite([]byte(`{"accessToken":"`+sign(`{"alg":"HS256"}`, `{"aud":"https://chat.service.signalr.net/"}`, "another key")+`"}`), rewrite.Caller{UserID: "alice"})
	fmt.Println(err)
	// Output:
	// Endpoint=https://chat.service.signalr.net;AccessKey=<redacted>;Version=1.0
	// {"asrs.s.uid":"alice","exp":1795766167,"aud":"https://chat.service.signalr.net/client/?hub=chat"}
	// rewriting negotiate body (signature): the token for "chat.service.signalr.net" is not signed by a configured access key
}

func sign(header, claims, key string) string {
	enc := base64.RawURLEncoding.EncodeToString
	unsigned := enc([]byte(header)) + "." + enc([]byte(claims))
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(unsigned))
	return unsigned + "." + enc(mac.Sum(nil))
}
