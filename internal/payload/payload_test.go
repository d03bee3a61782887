package payload_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gofanout/fanout/internal/payload"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		data, data64 string // "" for absent
		want         string
		err          bool
	}{
		{data: `{"a": 1}`, want: `{"a":1}`},
		{data64: `"aGk="`, want: "hi"},
		{data64: `""`, want: ""},
		{err: true},
		{data: `1`, data64: `"AA=="`, err: true},
		{data64: `"aGk"`, err: true}, // padding is required
		{data64: `5`, err: true},
	} {
		var d, d64 []byte
		if tc.data != "" {
			d = []byte(tc.data)
		}
		if tc.data64 != "" {
			d64 = []byte(tc.data64)
		}
		got, err := payload.Decode(d, d64)
		if (err != nil) != tc.err || string(got) != tc.want {
			t.Errorf("Decode(%s, %s): got %q, %v; want %q, error %v", tc.data, tc.data64, got, err, tc.want, tc.err)
		}
	}
}

// TestPublishDataTravelsAsData: what a client publishes as data comes out
// of a frame as the same data.
func TestPublishDataTravelsAsData(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`{"a":1}`, `"s"`, `null`, `[1,2]`, `1.5e3`} {
		p, err := payload.Decode([]byte(in), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(payload.AppendData(nil, p)), `,"data":`+in; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
		if got, want := string(payload.AppendPublishData(nil, p)), `,"data":`+in; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	if got := string(payload.AppendPublishData(nil, []byte(`{"a": 1}`))); got != `,"data64":"eyJhIjogMX0="` {
		t.Errorf("got %s, want data64 for JSON the server would compact", got)
	}
}

func TestMembers(t *testing.T) {
	t.Parallel()
	ms, err := payload.Members(nil, []byte(` {"a" : [1,{"x":"]"}], "\u0062":"s\"}", "c":{}} `))
	if err != nil {
		t.Fatal(err)
	}
	want := []payload.Member{{"a", []byte(`[1,{"x":"]"}]`)}, {"b", []byte(`"s\"}"`)}, {"c", []byte(`{}`)}}
	if len(ms) != len(want) {
		t.Fatalf("got %d members, want %d", len(ms), len(want))
	}
	for i := range ms {
		if ms[i].Name != want[i].Name || !bytes.Equal(ms[i].Value, want[i].Value) {
			t.Errorf("member %d: got %s=%s, want %s=%s", i, ms[i].Name, ms[i].Value, want[i].Name, want[i].Value)
		}
	}
	for _, in := range []string{``, `[]`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a":1}x`, `{"a":1}{}`, `{"a":}`} {
		if _, err := payload.Members(nil, []byte(in)); err == nil {
			t.Errorf("%s: got no error", in)
		}
	}
}

// FuzzMembers: Members accepts exactly the JSON objects without repeated
// names, and hands back each member's value as encoding/json reads it.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":[1,{"b":"}"}],"c":null}`, `{"a":1,"a":2}`, `{"\u00e9":"x"}`, `[1]`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1024 {
			t.Skip()
		}
		ms, err := payload.Members(nil, b)
		var obj map[string]json.RawMessage
		jerr := json.Unmarshal(b, &obj)
		if err != nil {
			if jerr == nil && obj != nil && !strings.Contains(err.Error(), "given twice") {
				t.Fatalf("%q: refused (%v) an object encoding/json reads", b, err)
			}
			return
		}
		if jerr != nil || obj == nil {
			t.Fatalf("%q: accepted what encoding/json refuses as an object: %v", b, jerr)
		}
		if len(ms) != len(obj) {
			t.Fatalf("%q: got %d members, encoding/json %d", b, len(ms), len(obj))
		}
		for _, m := range ms {
			if !bytes.Equal(bytes.TrimSpace(obj[m.Name]), m.Value) {
				t.Fatalf("%q: member %q: got %s, encoding/json %s", b, m.Name, m.Value, obj[m.Name])
			}
		}
	})
}
