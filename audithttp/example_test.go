package audithttp_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/cleveragents/audit"
	"github.com/cleveragents/audit/audithttp"
)

// The middleware records one entry per request: the path as Resource, the
// method, host and query in Details, the actor that WithActor names and the
// request's X-Request-ID; the handler finds the actor and the ID in its
// context. Health checks are skipped. New reports an invalid option as an
// error.
func Example() {
	svc, err := audit.New(audit.WithSQLite(":memory:"))
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		actor, _ := audit.ActorFromContext(r.Context())
		if actor != "root" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		fmt.Fprintln(w, "welcome")
	})
	auditor, err := audithttp.New(svc,
		audithttp.WithActor(func(r *http.Request) string { return r.Header.Get("X-User") }),
		audithttp.WithSkipPaths("/healthz"),
	)
	if err != nil {
		log.Fatal(err)
	}
	handler := auditor.Handler(mux)

	if _, err := audithttp.New(svc, audithttp.WithFailClosedTimeout(0)); err != nil {
		fmt.Println(err)
	}

	for _, user := range []string{"root", "mallory"} {
		r := httptest.NewRequest(http.MethodGet, "/admin/settings?tab=keys", nil)
		r.Header.Set("X-User", user)
		r.Header.Set("X-Request-ID", "req-"+user)
		handler.ServeHTTP(httptest.NewRecorder(), r)
	}
	handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/healthz", nil))

	if err := svc.Flush(context.Background()); err != nil {
		log.Fatal(err)
	}
	entries, err := svc.List(context.Background(), audit.Filter{})
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		fmt.Println(e.EventType, e.Actor, e.Details["method"], e.Resource, e.Details["query"], e.Outcome, e.RequestID, e.Details["status"])
	}
	// Output:
	// audithttp: WithFailClosedTimeout: 0s is not positive
	// http.request root GET /admin/settings tab=keys success req-root 200
	// http.request mallory GET /admin/settings tab=keys denied req-mallory 403
}
