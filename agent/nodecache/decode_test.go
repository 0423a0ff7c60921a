package nodecache

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func decodeSeeds(t testing.TB) [][]byte {
	files := []File{
		{},
		{Version: 1, Entries: []Entry{}},
		{Version: 1, WrittenAt: time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC), Entries: []Entry{
			{Registry: "harbor", Hosts: []string{"harbor.example.com:5443", "*.harbor.example.com"}, Username: "robot$ci", Password: `p"w\d/<&>` + "\u2028\x01é€😀"},
			{Registry: "ecr", Hosts: []string{"*.dkr.ecr.*.amazonaws.com"}, Username: "AWS", Password: "token", ExpiresAt: time.Date(2026, 11, 23, 22, 0, 0, 0, time.FixedZone("x", 3600))},
			{Registry: "none"},
			{Registry: "empty", Hosts: []string{}},
		}},
	}
	var out [][]byte
	for _, f := range files {
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out,
		[]byte(` { "version" : 1 , "entries" : [ { "registry" : "a\u00e9\n" , "hosts" : [ "h" ] } ] } `),
		[]byte(`{"version":1,"Entries":[]}`),
		[]byte(`{"version":1,"version":2}`),
		[]byte(`{"version":1,"entries":[],}`),
		[]byte(`{"version":1e0}`),
		[]byte(`{"version":01}`),
		[]byte(`{"version":1,"entries":null}`),
		[]byte(`{"version":1,"entries":[{"hosts":null}]}`),
		[]byte(`{"version":1,"entries":[{"registry":"\ud83d\ude00"}]}`),
		[]byte(`{"version":1,"entries":[{"registry":"bad`+"\xff"+`"}]}`),
		[]byte(`{"version":1,"entries":[{"expiresAt":"2026-11-23T10:00:00Z","expiresAt":"2026-11-23T10:00:00Z"}]}`),
		[]byte(`{"version":1,"writtenAt":"2026-11-23T10:00:00\u005a"}`),
		[]byte(`{"version":1} x`),
		[]byte(`{"version":1,"entries":[{"ho\u0073ts":[]},{"hosts":["a","b"]},{"hosts":["c"]}]}`),
		[]byte(`{"version":1,"entries":[{"ho\u0073ts":[]}]}`),
		[]byte(`{"version":1,"entries":[],"ENTRIES":null}`),
		[]byte(`{"version":null,"writtenAt":null,"entries":[{"registry":null,"hosts":null,"expiresAt":null}]}`),
	)
}

// Every answer the fast decoder gives is encoding/json's.
func FuzzDecodeFastAgrees(f *testing.F) {
	for _, s := range decodeSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := decodeFast(data)
		if !ok {
			return
		}
		var want File
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("fast decoded %q, encoding/json refuses it: %v", data, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("fast decoded %q as\n%#v\nencoding/json as\n%#v", data, got, want)
		}
	})
}

// What the agent writes, the fast decoder reads: the plugin never needs the slow path.
func TestDecodeFastReadsWhatWriteWrites(t *testing.T) {
	for _, s := range decodeSeeds(t)[:3] {
		if _, ok := decodeFast(s); !ok {
			t.Errorf("fast decoder gave up on %s", s)
		}
	}
}
