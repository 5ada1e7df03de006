package pgtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/dsv-plugin/dsv/test/servers/pgtest"
)

func TestServer(t *testing.T) {
	s := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if err := s.CanLogin(ctx, pgtest.SuperUser, s.Password); err != nil {
		t.Fatalf("superuser login: %v", err)
	}
	if err := s.CanLogin(ctx, pgtest.SuperUser, "wrong"); err == nil {
		t.Fatal("login with a wrong password succeeded: want password authentication")
	}

	if s.RoleExists(t, "app") {
		t.Fatal("role app exists before it is created")
	}
	s.Query(t, "create role app with login password 'pw'")
	if !s.RoleExists(t, "app") {
		t.Fatal("role app missing after create role")
	}
	if err := s.CanLogin(ctx, "app", "pw"); err != nil {
		t.Fatalf("login as app: %v", err)
	}
	s.Query(t, "drop role app")
	if s.RoleExists(t, "app") {
		t.Fatal("role app still exists after drop role")
	}
	if err := s.CanLogin(ctx, "app", "pw"); err == nil {
		t.Fatal("login as a dropped role succeeded")
	}
	// A name with a quote is quoted, not injected.
	if s.RoleExists(t, "x' or '1'='1") {
		t.Fatal("RoleExists does not quote its argument")
	}
}
