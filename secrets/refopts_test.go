package secrets

import (
	"strings"
	"testing"
)

// TestParseRefEmptyValues: an empty option is refused by name, never read
// as "not given": version-id= from an unset variable would silently read
// the current version.
func TestParseRefEmptyValues(t *testing.T) {
	reg, err := NewRegistry(stub("aws"))
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range []string{OptSecret, OptKey, OptVersionID, OptVersionStage, OptRegion} {
		t.Run(opt, func(t *testing.T) {
			_, _, problems := ParseRef("db", map[string]string{opt: ""}, "aws", reg)
			if len(problems) != 1 || !strings.Contains(problems[0].Error(), `option "`+opt+`": must not be empty`) {
				t.Fatalf("ParseRef(%s=) problems = %v, want one naming the option", opt, problems)
			}
		})
	}
	ref, _, problems := ParseRef("db", map[string]string{OptVersionID: "v1", OptVersionStage: "s", OptRegion: "r"}, "aws", reg)
	if len(problems) > 0 || ref.VersionID != "v1" || ref.VersionStage != "s" || ref.Region != "r" {
		t.Fatalf("ParseRef() = %+v, %v", ref, problems)
	}
}
