package render

import (
	"strings"
	"testing"
)

// A collection (secrets.Collector: the fake backend's names ending in '/',
// an SSM path) is one file per object, as key=* is one file per key.

func TestParseCollection(t *testing.T) {
	reg := testRegistry(t)
	tests := []struct {
		name       string
		raw        map[string]string
		wantLayout string
		wantAll    bool
		wantErr    string
	}{
		{name: "no layout", raw: map[string]string{"secret": "app/"}, wantLayout: LayoutDir, wantAll: true},
		{name: "layout=dir", raw: map[string]string{"secret": "app/", "layout": "dir"}, wantLayout: LayoutDir, wantAll: true},
		{name: "key=*", raw: map[string]string{"secret": "app/", "key": "*"}, wantLayout: LayoutDir, wantAll: true},
		{name: "key picks one object", raw: map[string]string{"secret": "app/", "key": "db"}, wantLayout: LayoutFile},
		{name: "layout=file", raw: map[string]string{"secret": "app/", "layout": "file"}, wantErr: `option "layout": "app/" names a set of secrets, one file each`},
		{name: "format", raw: map[string]string{"secret": "app/", "format": "json"}, wantErr: `option "format": with key=* each file holds one value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseOptions("vol", tt.raw, Defaults{Backend: "fake"}, reg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseOptions() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Layout != tt.wantLayout || o.Objects[0].AllKeys != tt.wantAll {
				t.Errorf("layout %q allKeys %v, want %q %v", o.Layout, o.Objects[0].AllKeys, tt.wantLayout, tt.wantAll)
			}
		})
	}

	o, err := ParseOptions("vol", map[string]string{"file.app": "secret=app/", "file.one": "secret=app/,key=db"}, Defaults{Backend: "fake"}, reg)
	if err != nil {
		t.Fatal(err)
	}
	if !o.Objects[0].AllKeys || o.Objects[1].AllKeys {
		t.Errorf("file.NAME of a collection: %+v, want the first exploded and the keyed one not", o.Objects)
	}
}
