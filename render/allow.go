package render

import "github.com/dsv-plugin/dsv/secrets"

// Refs lists every secret the volume reads, its templates' included, as
// known from its options, in order: what the ALLOW setting is checked
// against at create and mount.
func (o Options) Refs() []secrets.Ref {
	var out []secrets.Ref
	for _, obj := range o.Objects {
		if obj.Template == nil {
			out = append(out, obj.Ref)
			continue
		}
		for _, r := range obj.Template.Refs {
			out = append(out, r.Ref)
		}
	}
	return out
}
