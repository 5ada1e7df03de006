package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoSDKsLeftOut: the plugin links none of the SDKs its backends
// replaced with clients of their own, each for memory and size (issue 19;
// docs/benchmarks.md): test code may keep using them, the binary must not.
func TestNoSDKsLeftOut(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v: %s", err, out)
	}
	replaced := []string{
		"github.com/Azure/azure-sdk-for-go/", // secrets/azure: keyvault.go, entra.go
		"github.com/AzureAD/microsoft-authentication-library-for-go/",
		"github.com/aws/aws-sdk-go-v2/service/secretsmanager", // secrets/awsjson
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, p := range replaced {
			if strings.HasPrefix(pkg, p) {
				t.Errorf("cmd/dsv links %s", pkg)
			}
		}
	}
}
