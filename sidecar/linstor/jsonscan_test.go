package linstor

import (
	"bytes"
	"encoding/json"
	"errors"
	"hash/maphash"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

// eachKey calls f for each key of the JSON object elem (nothing for null)
// with a decoder positioned at its value.
func eachKey(elem []byte, f func(key string, dec *json.Decoder) error) error {
	dec := json.NewDecoder(bytes.NewReader(elem))
	tok, err := dec.Token()
	if err != nil || tok == nil {
		return err
	}
	if tok != json.Delim('{') {
		return errors.New("element is not an object")
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return err
		}
		if err := f(k.(string), dec); err != nil {
			return err
		}
	}
	return nil
}

// decodeInto decodes the next value into a fresh T (null: T's zero).
func decodeInto[T any](dec *json.Decoder, dst *T) error {
	var v T
	err := dec.Decode(&v)
	*dst = v
	return err
}

func oracleSkip(dec *json.Decoder) error {
	var raw json.RawMessage
	return dec.Decode(&raw)
}

// oracleList checks body as encoding/json does and decodes each element.
func oracleList[T any](body []byte, elem func([]byte) (T, error)) ([]T, error) {
	if !json.Valid(body) {
		return nil, errors.New("invalid JSON")
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(body, &elems); err != nil {
		return nil, err
	}
	var out []T
	for _, e := range elems {
		v, err := elem(e)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func oracleResources(body []byte) ([]leanResource, error) {
	return oracleList(body, func(e []byte) (r leanResource, err error) {
		err = eachKey(e, func(key string, dec *json.Decoder) error {
			switch key {
			case "name":
				return decodeInto(dec, &r.Name)
			case "node_name":
				return decodeInto(dec, &r.NodeName)
			case "flags":
				return decodeInto(dec, &r.Flags)
			}
			return oracleSkip(dec)
		})
		return r, err
	})
}

func oracleRDs(body []byte) ([]leanRD, error) {
	keep := func(p map[string]string) map[string]string {
		var out map[string]string
		for _, k := range rdKeep {
			if v, ok := p[k]; ok {
				if out == nil {
					out = map[string]string{}
				}
				out[k] = v
			}
		}
		return out
	}
	return oracleList(body, func(e []byte) (rd leanRD, err error) {
		err = eachKey(e, func(key string, dec *json.Decoder) error {
			switch key {
			case "name":
				return decodeInto(dec, &rd.Name)
			case "props":
				err := decodeInto(dec, &rd.Props)
				rd.Props = keep(rd.Props)
				return err
			case "volume_definitions":
				var raw []json.RawMessage
				if err := dec.Decode(&raw); err != nil {
					return err
				}
				rd.VolumeDefinitions = nil
				for _, r := range raw {
					var vd leanVD
					err := eachKey(r, func(key string, dec *json.Decoder) error {
						switch key {
						case "volume_number":
							return decodeInto(dec, &vd.VolumeNumber)
						case "props":
							err := decodeInto(dec, &vd.Props)
							vd.Props = keep(vd.Props)
							return err
						}
						return oracleSkip(dec)
					})
					if err != nil {
						return err
					}
					rd.VolumeDefinitions = append(rd.VolumeDefinitions, vd)
				}
				return nil
			}
			return oracleSkip(dec)
		})
		return rd, err
	})
}

// sameAsOracle decodes body with both and compares.
func sameAsOracle[T any](t *testing.T, body []byte, got []T, gotErr error, oracle func([]byte) ([]T, error)) {
	t.Helper()
	want, wantErr := oracle(body)
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("%q: error %v, encoding/json says %v", body, gotErr, wantErr)
	}
	if gotErr == nil && (len(got) != 0 || len(want) != 0) && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got %#v\nwant %#v", body, got, want)
	}
}

// decodable are inputs the two decoders may be compared on: valid UTF-8
// (encoding/json replaces invalid bytes, the scanner keeps them) and not
// nested deeper than the scanner allows.
func decodable(body []byte) bool {
	return utf8.Valid(body) && bytes.Count(body, []byte("["))+bytes.Count(body, []byte("{")) < maxDepth
}

var scanCorpus = []string{
	`[]`, `null`, ` [ ] `, `[null]`, `{}`, `"x"`, `[1]`, `[{}]`, `[{"name":"a"}]` + "\n",
	`[{"name":"pvc-1","node_name":"n1","props":{"StorPoolName":"thin"},"flags":["DISKLESS","TIE_BREAKER"],` +
		`"layer_object":{"children":[{"type":"STORAGE","storage":{}}],"drbd":{"connections":{"n2":{"connected":true,"message":"Connected"}},"promotion_score":10102}},` +
		`"state":{"in_use":false},"create_timestamp":1796196914000,"volumes":[{"allocated_size_kib":7.5e2,"state":{"disk_state":"UpToDate",` +
		`"replication_states":{"n2":{"replication_state":"SyncSource","done_percentage":45.3}}},"reports":[{"ret_code":-9223372036854774806}]}]}]`,
	`[{"name":"a\"b\\c\/d\u00e9\ud83d\ude00\ud800x\udc00","flags":null,"node_name":null}]`,
	`[{"name":"a","name":"b"}]`, `[{"NAME":"a","Name":"b"}]`, `[{"flags":[null,"x"]}]`,
	`[{"name":1}]`, `[{"flags":"x"}]`, `[{"flags":[1]}]`, `[{"x":01}]`, `[{"x":-}]`, `[{"x":1.}]`, `[{"x":1e}]`,
	`[{"x":tru}]`, `[{"x":"a` + "\x01" + `"}]`, `[{"x":"\q"}]`, `[{"x":"\u12"}]`, `[{"name":"a"}`, `[{"name":"a"}] x`,
	`[{"name":"a"}][]`, `[{"name":"a",}]`, `[{"name" "a"}]`, `[{,}]`, `[,]`, `[{"a":[1,2,]}]`,
	`[{"name":"rd","props":{"Aux/affinity-updater-skip":"yes","Other":"x"},"volume_definitions":[{"volume_number":0,"props":{"Aux/affinity-updater-saved-pv":"{}"}},null,{"volume_number":null}]}]`,
	`[{"volume_definitions":[{"volume_number":1.5}]}]`, `[{"volume_definitions":[{"volume_number":4294967296}]}]`,
	`[{"volume_definitions":[{"volume_number":-0}]}]`, `[{"props":{"Other":1}}]`, `[{"props":{"Other":null,"Aux/affinity-updater-skip":null}}]`,
	`[{"volume_definitions":{}}]`, `[{"props":[]}]`,
}

// fuzzAgainstOracle fuzzes a bulk decoder against its oracle.
func fuzzAgainstOracle[T any](f *testing.F, decode func(io.Reader, *digest) ([]T, error), oracle func([]byte) ([]T, error)) {
	for _, s := range scanCorpus {
		f.Add([]byte(s))
	}
	seed := maphash.MakeSeed()
	f.Fuzz(func(t *testing.T, body []byte) {
		if !decodable(body) {
			return
		}
		got, err := decode(bytes.NewReader(body), newDigest(seed))
		sameAsOracle(t, body, got, err, oracle)
	})
}

func FuzzDecodeResources(f *testing.F) { fuzzAgainstOracle(f, decodeResources, oracleResources) }

func FuzzDecodeRDs(f *testing.F) { fuzzAgainstOracle(f, decodeRDs, oracleRDs) }

// The scanner reads answers in whatever pieces the network delivers them:
// one byte at a time gives the same result, errors included.
func TestScannerReadsAnswersInAnyPieces(t *testing.T) {
	seed := maphash.MakeSeed()
	for _, body := range scanCorpus {
		whole, errWhole := decodeResources(strings.NewReader(body), newDigest(seed))
		bytewise, errBytes := decodeResources(iotest.OneByteReader(strings.NewReader(body)), newDigest(seed))
		if (errWhole != nil) != (errBytes != nil) || !reflect.DeepEqual(whole, bytewise) {
			t.Errorf("%q: whole %v %v, byte by byte %v %v", body, whole, errWhole, bytewise, errBytes)
		}
		sameAsOracle(t, []byte(body), whole, errWhole, oracleResources)
	}
	// A read error is the decoder's error, not a parse error.
	_, err := decodeResources(io.MultiReader(strings.NewReader(`[{"name":"a"},`), iotest.ErrReader(io.ErrClosedPipe)), newDigest(seed))
	if !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("read error: %v", err)
	}
	// Answers longer than the buffer: a string and a number across it.
	long := `[{"name":"` + strings.Repeat("x", 100<<10) + `\u00e9","volumes":[` + strings.Repeat("1234567890,", 10<<10) + `1]}]`
	got, err := decodeResources(strings.NewReader(long), newDigest(seed))
	if err != nil || len(got) != 1 || len(got[0].Name) != 100<<10+2 {
		t.Errorf("long answer: %v", err)
	}
}
