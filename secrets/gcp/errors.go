package gcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"golang.org/x/oauth2"

	"github.com/dsv-plugin/dsv/secrets"
)

// Hints, one per thing the user can fix.
const (
	hintAccessDenied = "the plugin's Google identity may not read this secret; grant it the Secret Manager Secret Accessor role (roles/secretmanager.secretAccessor), or another role with the permission secretmanager.versions.access, on the secret or its project"
	hintDisabledAPI  = "the Secret Manager API is not enabled in the project; enable secretmanager.googleapis.com there"
	hintNotFound     = "check the project, the secret name and the version-id option; a version number or alias that does not exist is not found either"
	hintPrecondition = "the version is disabled or destroyed; enable it in Secret Manager, or choose another with the version-id option"
	hintInvalid      = "the request was rejected; check the secret and version-id options"
	hintThrottled    = "Secret Manager throttled the request (quota exceeded), also when tried again until TIMEOUT; read less often: raise CACHE_TTL or the refresh interval, lower STORE_CONCURRENCY, or ask Google for a higher quota"
	hintServer       = "the service failed; try again later"
	hintRefused      = "the request was refused with an answer that is not Google's own; check the credentials given to the plugin, and any proxy or GCP_ENDPOINT on the way"
	hintMalformed    = "the answer was not Secret Manager's; check GCP_ENDPOINT and any proxy on the way"
	hintTooLarge     = "Secret Manager values are at most 64 KiB; check GCP_ENDPOINT and any proxy on the way"
)

// classify turns an Access failure into a *secrets.Error. Causes are
// Google's messages and the library's; none carries a value.
func (d *Driver) classify(ctx context.Context, ref secrets.Ref, name string, err error) error {
	var ce *CredentialsError
	if errors.As(err, &ce) {
		return d.credentialsFailure(ctx, ref, ce)
	}
	if e := secrets.FromContext(ctx, ref); e != nil {
		return e
	}
	var ae *APIError
	switch {
	case errors.As(err, &ae):
		return apiFailure(ref, ae)
	case errors.Is(err, errMalformed):
		return secrets.Fail(ref, secrets.ErrBadValue, hintMalformed, err)
	case errors.Is(err, errTooLarge):
		return secrets.Fail(ref, secrets.ErrBadValue, hintTooLarge, err)
	}
	return secrets.Fail(ref, secrets.ErrUnavailable,
		fmt.Sprintf("could not reach Secret Manager at %s; check the host's network and DNS, and the %s plugin setting", d.host(name), EnvEndpoint), err)
}

// apiFailure classifies an error answer of the API by its google.rpc
// status, or its HTTP status when the body is not Google's.
func apiFailure(ref secrets.Ref, ae *APIError) error {
	switch ae.Status {
	case "PERMISSION_DENIED":
		if ae.Reason == "SERVICE_DISABLED" || ae.Reason == "API_DISABLED" {
			return secrets.Fail(ref, secrets.ErrAccessDenied, hintDisabledAPI, ae)
		}
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintAccessDenied, ae)
	case "UNAUTHENTICATED":
		return secrets.Fail(ref, secrets.ErrAccessDenied, "Google refused the access token; check the credentials given to the plugin", ae)
	case "NOT_FOUND":
		return secrets.Fail(ref, secrets.ErrNotFound, hintNotFound, ae)
	case "FAILED_PRECONDITION":
		return secrets.Fail(ref, secrets.ErrNotFound, hintPrecondition, ae)
	case "INVALID_ARGUMENT", "OUT_OF_RANGE":
		return secrets.Fail(ref, secrets.ErrNotFound, hintInvalid, ae)
	case "RESOURCE_EXHAUSTED":
		return secrets.Fail(ref, secrets.ErrThrottled, hintThrottled, ae)
	case "":
	default:
		return secrets.Fail(ref, secrets.ErrUnavailable, hintServer, ae)
	}
	switch ae.HTTPStatus {
	case http.StatusUnauthorized, http.StatusForbidden:
		return secrets.Fail(ref, secrets.ErrAccessDenied, hintRefused, ae)
	case http.StatusNotFound:
		return secrets.Fail(ref, secrets.ErrNotFound, "no Secret Manager answered there; "+hintMalformed, ae)
	case http.StatusTooManyRequests:
		return secrets.Fail(ref, secrets.ErrThrottled, hintThrottled, ae)
	}
	return secrets.Fail(ref, secrets.ErrUnavailable, hintServer, ae)
}

// credentialsFailure classifies a failure to get an access token. Without
// a file and a metadata server there are no credentials at all: access
// denied, even when the metadata server's silence ran out the deadline.
func (d *Driver) credentialsFailure(ctx context.Context, ref secrets.Ref, ce *CredentialsError) error {
	file := fmt.Sprintf("%s (the %s setting, in the plugin's credentials mount)", ce.File, EnvCredentials)
	if ce.Metadata {
		// Blame a missing service account only when Google's metadata
		// server said so; elsewhere say the host is not on Google Cloud.
		var me *MetadataError
		errors.As(ce.Err, &me)
		switch {
		case me != nil && me.NoServiceAccount():
			return secrets.Fail(ref, secrets.ErrAccessDenied,
				"no credentials file, and this Google Cloud instance has no service account (its metadata server has none); attach one to the instance, or put a service-account or workload identity federation JSON at "+file, ce)
		case me != nil && me.Google:
			return secrets.Fail(ref, secrets.ErrUnavailable,
				"no credentials file, and the Google Cloud metadata server did not give a token; try again, or put a service-account or workload identity federation JSON at "+file, ce)
		case me != nil && me.Status != 0:
			return secrets.Fail(ref, secrets.ErrAccessDenied,
				"no Google credentials found: no file at "+file+", and this host is not on Google Cloud (the server at the metadata address is not Google's); put a service-account or workload identity federation JSON there", ce)
		case me != nil && me.GCE:
			return secrets.Fail(ref, secrets.ErrUnavailable,
				"no credentials file, and the metadata server of this Compute Engine machine did not answer; check that the plugin runs on the host network and nothing blocks "+me.Host+", or put a service-account or workload identity federation JSON at "+file, ce)
		}
		return secrets.Fail(ref, secrets.ErrAccessDenied,
			"no Google credentials found: no file at "+file+", and this host is not on Google Cloud (no metadata server answered, and it is not a Compute Engine machine); put a service-account or workload identity federation JSON there", ce)
	}
	if ce.Load {
		return secrets.Fail(ref, secrets.ErrAccessDenied,
			"the credentials file is not usable; give a service-account key or a workload identity federation configuration (JSON) at "+file, ce)
	}
	var re *oauth2.RetrieveError
	if errors.As(ce.Err, &re) {
		return secrets.Fail(ref, secrets.ErrAccessDenied,
			"the token endpoint refused the credentials in "+ce.File+"; the service-account key may be deleted or disabled, the federation configuration wrong, or the host clock off", ce)
	}
	if e := secrets.FromContext(ctx, ref); e != nil {
		var se *secrets.Error
		if errors.As(e, &se) && errors.Is(se.Kind, secrets.ErrTimeout) {
			se.Hint = "the token endpoint of the credentials in " + ce.File + " did not answer within the TIMEOUT plugin setting; check that it is reachable from the host"
		}
		return e
	}
	var netErr net.Error
	if errors.As(ce.Err, &netErr) {
		return secrets.Fail(ref, secrets.ErrUnavailable,
			"could not reach the token endpoint of the credentials in "+ce.File+" (token_uri, or the token_url of a federation configuration); check the host's network and DNS", ce)
	}
	// The external account flow reports refusals in its own words.
	return secrets.Fail(ref, secrets.ErrAccessDenied,
		"could not get an access token with the credentials in "+ce.File+"; check the file", ce)
}
