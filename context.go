package audit

import "context"

type ctxKey int

const (
	actorKey ctxKey = iota
	requestIDKey
)

// ContextWithActor returns a copy of ctx that carries actor. Record fills
// an entry's empty Actor from it.
func ContextWithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey, actor)
}

// ActorFromContext returns the actor that ctx carries, if any.
func ActorFromContext(ctx context.Context) (string, bool) {
	a, ok := ctx.Value(actorKey).(string)
	return a, ok
}

// ContextWithRequestID returns a copy of ctx that carries the request ID
// id. Record fills an entry's empty RequestID from it.
func ContextWithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// RequestIDFromContext returns the request ID that ctx carries, if any.
func RequestIDFromContext(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(requestIDKey).(string)
	return id, ok
}
