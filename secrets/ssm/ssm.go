// Package ssm is the "ssm" backend: it reads parameters from AWS Systems
// Manager Parameter Store (String, StringList and SecureString, decrypted),
// or from an emulator named by AWS_ENDPOINT_URL.
//
// The secret option names a parameter (/prod/db/password, or its ARN), one
// version of it (/prod/db/password:3, or the version-id option) or the
// version that carries a label (/prod/db/password:blue, or the
// version-stage option); or a path (/prod/app/, ending in '/'), whose
// parameters are read as one JSON object from each name, relative to the
// path, to its value (secrets.Collector): a volume writes one file per
// parameter, and key= picks one. The recursive option reads the parameters
// of the path's sub-paths too, their names holding '/'.
//
// Credentials, the credentials mount and the region work as in the aws
// backend (package awsauth). The region of a fetch is, first to last: the
// region volume option, the region in an ARN given as the secret option,
// Config.DefaultRegion (the AWS_REGION plugin setting), the region of the
// SDK's profile.
package ssm

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/rs/zerolog"

	"github.com/dsv-plugin/dsv/secrets"
	"github.com/dsv-plugin/dsv/secrets/awsauth"
)

// Name is the backend's registry name, the value of the backend option.
const Name = "ssm"

// OptRecursive is the backend's own option: true reads a path's sub-paths
// too.
const OptRecursive = "recursive"

// maxPathBytes bounds what a path read holds, names and values: the
// volume's tmpfs is 2 MiB, and a path read at the root of a large account
// must fail rather than fill memory.
const maxPathBytes = 1 << 20

// pageSize is GetParametersByPath's largest page.
const pageSize = 10

// API is the SSM client narrowed to the two calls the backend makes, so
// that tests can inject a fake; Client is the real one.
type API interface {
	GetParameter(ctx context.Context, in *GetParameterInput) (*GetParameterOutput, error)
	GetParametersByPath(ctx context.Context, in *GetParametersByPathInput) (*GetParametersByPathOutput, error)
}

// Config configures the backend.
type Config struct {
	// DefaultRegion is the AWS_REGION plugin setting; empty defers to the
	// SDK's profile.
	DefaultRegion string
	// Logger receives debug logs of fetches; never values.
	Logger zerolog.Logger
	// NewClient builds a client for a region ("" means the SDK's own
	// resolution). Nil uses NewClient from this package; tests inject fakes.
	NewClient func(ctx context.Context, region string) (API, error)
}

// Driver is the ssm backend. It is safe for concurrent use; it keeps one
// client per region.
type Driver struct {
	defaultRegion string
	log           zerolog.Logger
	clients       *awsauth.Clients[API]
}

var (
	_ secrets.SecretStoreDriver = (*Driver)(nil)
	_ secrets.ParamsDriver      = (*Driver)(nil)
	_ secrets.Normalizer        = (*Driver)(nil)
	_ secrets.Collector         = (*Driver)(nil)
	_ secrets.Canonicalizer     = (*Driver)(nil)
)

// New returns the ssm backend.
func New(cfg Config) *Driver {
	d := &Driver{
		defaultRegion: cfg.DefaultRegion,
		log:           cfg.Logger.With().Str("component", Name).Logger(),
	}
	build := cfg.NewClient
	if build == nil {
		build = NewClient
	}
	d.clients = awsauth.NewClients(build)
	return d
}

// Name returns "ssm".
func (d *Driver) Name() string { return Name }

// Params lists the backend's own option.
func (d *Driver) Params() []string { return []string{OptRecursive} }

// IsCollection reports whether ref names a path.
func (d *Driver) IsCollection(ref secrets.Ref) bool { return isPath(ref.Name) }

// Canonical returns what ALLOW must allow for ref to be read. A parameter
// is its name; a path is every parameter under it, which the name
// PATH* stands for ('*' is no character of a parameter name, so only a
// pattern's wildcards match it): /prod/app/* allows the path /prod/app/,
// and only a pattern like /prod/app/** allows it with recursive=true
// (PATH*/*). It asks nothing of AWS.
func (d *Driver) Canonical(_ context.Context, ref secrets.Ref) (string, error) {
	if !isPath(ref.Name) {
		return ref.Name, nil
	}
	if recursive(ref) {
		return ref.Name + "*/*", nil
	}
	return ref.Name + "*", nil
}

// Fetch reads a parameter, or every parameter of a path. Errors are
// *secrets.Error.
func (d *Driver) Fetch(ctx context.Context, ref secrets.Ref) (secrets.Secret, error) {
	region := d.region(ref)
	client, err := d.clients.Get(ctx, region)
	if err != nil {
		return secrets.Secret{}, awsauth.ClientError(ctx, ref, err)
	}
	log := d.log.With().
		Str("secret", ref.Name).
		Str("region", region).
		Str("version_id", ref.VersionID).
		Str("version_stage", ref.VersionStage).
		Logger()
	log.Debug().Msg("fetching")

	var sec secrets.Secret
	if isPath(ref.Name) {
		sec, err = d.fetchPath(ctx, client, ref, region)
	} else {
		sec, err = d.fetchParameter(ctx, client, ref, region)
	}
	if err != nil {
		log.Debug().Err(err).Msg("fetch failed")
		return secrets.Secret{}, err
	}
	if ref.Key != "" {
		if sec.Value, err = secrets.ExtractKey(ref, sec.Value); err != nil {
			return secrets.Secret{}, err
		}
	}
	log.Debug().Str("version", sec.Version).Msg("fetched")
	return sec, nil
}

func (d *Driver) fetchParameter(ctx context.Context, client API, ref secrets.Ref, region string) (secrets.Secret, error) {
	out, err := client.GetParameter(ctx, &GetParameterInput{
		Name:           aws.String(selectorName(ref)),
		WithDecryption: aws.Bool(true),
	})
	if err != nil {
		return secrets.Secret{}, classify(ctx, ref, region, "ssm:GetParameter", err)
	}
	if out.Parameter == nil || out.Parameter.Value == nil {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrBadValue, "AWS answered without a value", nil)
	}
	return secrets.Secret{Value: []byte(*out.Parameter.Value), Version: strconv.FormatInt(out.Parameter.Version, 10)}, nil
}

// fetchPath reads every parameter of a path, page by page, into a JSON
// object from relative name to value.
func (d *Driver) fetchPath(ctx context.Context, client API, ref secrets.Ref, region string) (secrets.Secret, error) {
	rec := recursive(ref)
	in := &GetParametersByPathInput{
		Path:           aws.String(apiPath(ref.Name)),
		Recursive:      aws.Bool(rec),
		WithDecryption: aws.Bool(true),
		MaxResults:     aws.Int32(pageSize),
	}
	values := map[string]string{}
	versions := map[string]int64{}
	size := 0
	seen := map[string]bool{}
	for {
		out, err := client.GetParametersByPath(ctx, in)
		if err != nil {
			return secrets.Secret{}, classify(ctx, ref, region, "ssm:GetParametersByPath", err)
		}
		for _, prm := range out.Parameters {
			name := aws.ToString(prm.Name)
			rel, ok := strings.CutPrefix(name, ref.Name)
			if !ok || rel == "" || prm.Value == nil {
				d.log.Debug().Str("secret", ref.Name).Str("parameter", secrets.Clip(name, 200)).Msg("skipped: not under the path, or no value")
				continue
			}
			size += len(rel) + len(*prm.Value)
			if size > maxPathBytes {
				return secrets.Secret{}, secrets.Fail(ref, secrets.ErrBadValue,
					fmt.Sprintf("the path holds more than %d KiB of names and values; give a narrower path", maxPathBytes>>10), nil)
			}
			values[rel] = *prm.Value
			versions[rel] = prm.Version
		}
		next := aws.ToString(out.NextToken)
		if next == "" {
			break
		}
		// A token answered twice would read the same pages until the
		// deadline.
		if seen[next] {
			return secrets.Secret{}, secrets.Fail(ref, secrets.ErrUnavailable, "AWS answered a page token it had already given; try again later", nil)
		}
		seen[next] = true
		page := *in
		page.NextToken = aws.String(next)
		in = &page
	}
	if len(values) == 0 {
		hint := "no parameter under the path; check the path and the region (" + regionText(region) + ")"
		if !rec {
			hint += ", or set recursive=true to read its sub-paths"
		}
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrNotFound, hint, nil)
	}
	value, err := json.Marshal(values)
	if err != nil {
		return secrets.Secret{}, secrets.Fail(ref, secrets.ErrBadValue, "the parameters could not be encoded", nil)
	}
	return secrets.Secret{Value: value, Version: pathVersion(versions)}, nil
}

// pathVersion describes the versions read from a path for `docker volume
// inspect`: "db@3 user@1", cut when long.
func pathVersion(versions map[string]int64) string {
	names := make([]string, 0, len(versions))
	for n := range versions {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s@%d", n, versions[n])
	}
	return secrets.Clip(b.String(), 512)
}

// region applies the precedence in the package comment; "" leaves the
// choice to the SDK.
func (d *Driver) region(ref secrets.Ref) string {
	if ref.Region != "" {
		return ref.Region
	}
	if m := arnRE.FindStringSubmatch(ref.Name); m != nil && awsauth.ValidRegion(m[2]) {
		return m[2]
	}
	return d.defaultRegion
}

func regionText(region string) string {
	if region == "" {
		return "the SDK's default region"
	}
	return strconv.Quote(region)
}
