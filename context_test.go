package audit

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRecordTakesActorAndRequestIDFromContext(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st *backend) {
		s := st.service(t)
		ctx := ContextWithRequestID(ContextWithActor(context.Background(), "carol"), "req-1")
		require.NoError(t, s.Record(ctx, Entry{EventType: "e"}))
		require.NoError(t, s.Record(ctx, Entry{EventType: "e", Actor: "dave", RequestID: "req-2"}))
		require.NoError(t, s.Flush(ctx))
		list, err := s.List(ctx, Filter{})
		require.NoError(t, err)
		require.Len(t, list, 2)
		assert.Equal(t, "carol", list[0].Actor)
		assert.Equal(t, "req-1", list[0].RequestID)
		assert.Equal(t, "dave", list[1].Actor, "an explicit Actor wins")
		assert.Equal(t, "req-2", list[1].RequestID)

		a, ok := ActorFromContext(context.Background())
		assert.False(t, ok)
		assert.Empty(t, a)
	})
}
