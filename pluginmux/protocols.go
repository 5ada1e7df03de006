package pluginmux

import (
	"net/http"

	"github.com/docker/go-plugins-helpers/sdk"
	"github.com/docker/go-plugins-helpers/secrets"
	"github.com/docker/go-plugins-helpers/volume"
)

// VolumeHandler answers the volume plugin protocol's calls (prefix
// /VolumeDriver.) with d, as go-plugins-helpers' volume.Handler does: the
// request decoded into its type (a body that is not one is answered 400),
// the answer encoded as JSON, a failure as {"Err": "..."} with status 500.
func VolumeHandler(d volume.Driver) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/VolumeDriver.Create":
			if req := (&volume.CreateRequest{}); sdk.DecodeRequest(w, r, req) == nil {
				answer(w, struct{}{}, d.Create(req))
			}
		case "/VolumeDriver.Remove":
			if req := (&volume.RemoveRequest{}); sdk.DecodeRequest(w, r, req) == nil {
				answer(w, struct{}{}, d.Remove(req))
			}
		case "/VolumeDriver.Mount":
			if req := (&volume.MountRequest{}); sdk.DecodeRequest(w, r, req) == nil {
				res, err := d.Mount(req)
				answer(w, res, err)
			}
		case "/VolumeDriver.Unmount":
			if req := (&volume.UnmountRequest{}); sdk.DecodeRequest(w, r, req) == nil {
				answer(w, struct{}{}, d.Unmount(req))
			}
		case "/VolumeDriver.Path":
			if req := (&volume.PathRequest{}); sdk.DecodeRequest(w, r, req) == nil {
				res, err := d.Path(req)
				answer(w, res, err)
			}
		case "/VolumeDriver.Get":
			if req := (&volume.GetRequest{}); sdk.DecodeRequest(w, r, req) == nil {
				res, err := d.Get(req)
				answer(w, res, err)
			}
		case "/VolumeDriver.List":
			res, err := d.List()
			answer(w, res, err)
		case "/VolumeDriver.Capabilities":
			sdk.EncodeResponse(w, d.Capabilities(), false)
		default:
			notFound(w, r)
		}
	})
}

// answer encodes a volume call's result, or its error.
func answer(w http.ResponseWriter, res any, err error) {
	if err != nil {
		sdk.EncodeResponse(w, volume.NewErrorResponse(err.Error()), true)
		return
	}
	sdk.EncodeResponse(w, res, false)
}

// SecretHandler answers the secret provider protocol's call
// (/SecretProvider.GetSecret) with d, as go-plugins-helpers'
// secrets.Handler does: status 500 when the response carries an Err.
func SecretHandler(d secrets.Driver) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/SecretProvider.GetSecret" {
			notFound(w, r)
			return
		}
		var req secrets.Request
		if sdk.DecodeRequest(w, r, &req) != nil {
			return
		}
		res := d.Get(req)
		sdk.EncodeResponse(w, res, res.Err != "")
	})
}
