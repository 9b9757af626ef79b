package orderstore_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderv1 "example.com/rampart/proto/order/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
	"example.com/rampart/services/order/internal/orderstore"
	"example.com/rampart/services/order/internal/orderstore/orderstoretest"
)

var (
	tea = orderstore.Item{SKU: "TEA-GREEN-100G", Name: "Green tea", Quantity: 2, UnitPrice: 650, LineTotal: 1300}
	mug = orderstore.Item{SKU: "MUG-STONEWARE", Name: "Mug", Quantity: 1, UnitPrice: 1400, LineTotal: 1400}
)

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func newOrder(userID, key string) orderstore.NewOrder {
	return orderstore.NewOrder{
		UserID:         userID,
		IdempotencyKey: key,
		PaymentMethod:  "tok_visa",
		Currency:       "EUR",
		Items:          []orderstore.Item{tea, mug},
		Total:          2700,
	}
}

// create places an order for a new user and returns it.
func create(t *testing.T, f *orderstoretest.Fixture) orderstore.Order {
	t.Helper()
	user := uuid.NewString()
	o, created, err := f.Store.Create(orderstoretest.UserContext(t.Context(), user), newOrder(user, "key-"+user))
	if err != nil || !created {
		t.Fatalf("Create = %v, created %t", err, created)
	}
	return o
}

// inStatus places an order and takes it to status.
func inStatus(t *testing.T, f *orderstoretest.Fixture, status orderstore.Status) orderstore.Order {
	t.Helper()
	o := create(t, f)
	ctx := orderstoretest.UserContext(t.Context(), o.UserID)
	var err error
	switch status {
	case orderstore.StatusPendingPayment:
	case orderstore.StatusPaid:
		o, _, err = f.Store.SettlePayment(ctx, paid(o))
	case orderstore.StatusPaymentFailed:
		o, _, err = f.Store.SettlePayment(ctx, failed(o))
	case orderstore.StatusCancelled:
		if o, _, err = f.Store.SettlePayment(ctx, paid(o)); err == nil {
			o, err = f.Store.Cancel(ctx, o.ID, o.UserID, true)
		}
	}
	if err != nil {
		t.Fatalf("taking order to %s: %v", status, err)
	}
	return o
}

func paid(o orderstore.Order) orderstore.Payment {
	return orderstore.Payment{OrderID: o.ID, UserID: o.UserID, Paid: true, Currency: o.Currency, Amount: o.Total}
}

func failed(o orderstore.Order) orderstore.Payment {
	return orderstore.Payment{OrderID: o.ID, UserID: o.UserID, FailureReason: "card declined"}
}

func TestCreate(t *testing.T) {
	t.Parallel()
	f := orderstoretest.New(t)
	user := uuid.NewString()
	ctx := orderstoretest.UserContext(t.Context(), user)

	o, created, err := f.Store.Create(ctx, newOrder(user, "first-order"))
	if err != nil || !created {
		t.Fatalf("Create = %v, created %t", err, created)
	}
	want := orderstore.Order{
		ID: o.ID, UserID: user, Status: orderstore.StatusPendingPayment,
		Items: []orderstore.Item{tea, mug}, Currency: "EUR", Total: 2700,
		CreateTime: o.CreateTime, UpdateTime: o.CreateTime,
	}
	if diff := cmp.Diff(want, o); diff != "" {
		t.Errorf("Create (-want +got):\n%s", diff)
	}
	got, err := f.Store.Get(ctx, o.ID, user)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(o, got); diff != "" {
		t.Errorf("Get after Create (-created +read):\n%s", diff)
	}

	wantEvents := []proto.Message{&orderv1.OrderCreated{
		OrderId:       o.ID,
		UserId:        user,
		Total:         &moneyv1.Money{CurrencyCode: "EUR", Amount: 2700},
		PaymentMethod: "tok_visa",
		CreateTime:    timestamp(o.CreateTime),
	}}
	if diff := cmp.Diff(wantEvents, f.Events(t), protocmp.Transform()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if n := f.Outbox.Notified(); n != 1 {
		t.Errorf("relay woken %d times, want 1", n)
	}
}

func TestCreateIdempotency(t *testing.T) {
	t.Parallel()
	reordered := newOrder("", "")
	reordered.Items = []orderstore.Item{mug, tea}
	moreTea := newOrder("", "")
	moreTea.Items = []orderstore.Item{{SKU: tea.SKU, Name: tea.Name, Quantity: 3, UnitPrice: 650, LineTotal: 1950}, mug}
	otherCard := newOrder("", "")
	otherCard.PaymentMethod = "tok_mastercard"
	fewerItems := newOrder("", "")
	fewerItems.Items = []orderstore.Item{tea}

	tests := []struct {
		name        string
		retry       orderstore.NewOrder
		otherUser   bool
		wantSame    bool
		wantErr     error
		wantOrders  int
		wantCreated bool
	}{
		{name: "same request", retry: newOrder("", ""), wantSame: true, wantOrders: 1},
		{name: "items in another order", retry: reordered, wantSame: true, wantOrders: 1},
		{name: "another quantity", retry: moreTea, wantErr: orderstore.ErrIdempotencyConflict, wantOrders: 1},
		{name: "fewer items", retry: fewerItems, wantErr: orderstore.ErrIdempotencyConflict, wantOrders: 1},
		{name: "another payment method", retry: otherCard, wantErr: orderstore.ErrIdempotencyConflict, wantOrders: 1},
		{name: "same key, another user", retry: newOrder("", ""), otherUser: true, wantOrders: 2, wantCreated: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := orderstoretest.New(t)
			const key = "shared-key-1"
			user := uuid.NewString()
			ctx := orderstoretest.UserContext(t.Context(), user)
			first, _, err := f.Store.Create(ctx, newOrder(user, key))
			if err != nil {
				t.Fatal(err)
			}
			if tt.otherUser {
				user = uuid.NewString()
				ctx = orderstoretest.UserContext(t.Context(), user)
			}
			eventsBefore := len(f.Events(t))

			retry := tt.retry
			retry.UserID, retry.IdempotencyKey = user, key
			got, created, err := f.Store.Create(ctx, retry)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Create again = %v, want %v", err, tt.wantErr)
			}
			if created != tt.wantCreated {
				t.Errorf("created = %t, want %t", created, tt.wantCreated)
			}
			if tt.wantSame {
				if diff := cmp.Diff(first, got); diff != "" {
					t.Errorf("retry returned another order (-first +got):\n%s", diff)
				}
			}
			newEvents := len(f.Events(t)) - eventsBefore
			if wantEvents := map[bool]int{true: 1}[tt.wantCreated]; newEvents != wantEvents {
				t.Errorf("retry enqueued %d events, want %d", newEvents, wantEvents)
			}
			var orders int
			err = f.DB.QueryRow("SELECT count(*) FROM orders WHERE idempotency_key = ?", key).Scan(&orders)
			if err != nil {
				t.Fatal(err)
			}
			if orders != tt.wantOrders {
				t.Errorf("%d orders under the key, want %d", orders, tt.wantOrders)
			}
		})
	}
}

func TestCreateSameKeyReturnsOrderAsItIsNow(t *testing.T) {
	t.Parallel()
	f := orderstoretest.New(t)
	user := uuid.NewString()
	ctx := orderstoretest.UserContext(t.Context(), user)
	first, _, err := f.Store.Create(ctx, newOrder(user, "moves-on"))
	if err != nil {
		t.Fatal(err)
	}
	settled, _, err := f.Store.SettlePayment(ctx, paid(first))
	if err != nil {
		t.Fatal(err)
	}

	got, created, err := f.Store.Create(ctx, newOrder(user, "moves-on"))
	if err != nil || created {
		t.Fatalf("Create again = %v, created %t", err, created)
	}
	if diff := cmp.Diff(settled, got); diff != "" {
		t.Errorf("retry (-stored +got):\n%s", diff)
	}
}

func TestCreateConcurrentRetriesMakeOneOrder(t *testing.T) {
	t.Parallel()
	f := orderstoretest.New(t)
	user := uuid.NewString()
	ctx := orderstoretest.UserContext(t.Context(), user)

	const callers = 8
	ids := make([]string, callers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	createdCount := 0
	for i := range callers {
		wg.Go(func() {
			o, c, err := f.Store.Create(ctx, newOrder(user, "raced-key"))
			if err != nil {
				t.Errorf("Create: %v", err)
				return
			}
			ids[i] = o.ID
			if c {
				mu.Lock()
				createdCount++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if createdCount != 1 {
		t.Errorf("%d calls created an order, want 1", createdCount)
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent retries returned orders %v", ids)
		}
	}
	if n := len(f.Events(t)); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
}

func TestCreateRefusedWritesNothing(t *testing.T) {
	t.Parallel()
	f := orderstoretest.New(t)
	user := uuid.NewString()

	duplicateSKU := newOrder(user, "duplicate-sku")
	duplicateSKU.Items = []orderstore.Item{tea, tea}
	tests := []struct {
		name    string
		noToken bool
		order   orderstore.NewOrder
	}{
		// The event cannot be enqueued without a transaction token.
		{"no transaction token", true, newOrder(user, "no-token")},
		{"sku twice", false, duplicateSKU},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := orderstoretest.UserContext(t.Context(), user)
			if tt.noToken {
				ctx = t.Context()
			}
			if _, _, err := f.Store.Create(ctx, tt.order); err == nil {
				t.Fatal("Create succeeded")
			}
			// Every create on this database is refused: none may leave a row.
			for _, count := range []string{
				"SELECT count(*) FROM orders",
				"SELECT count(*) FROM order_items",
				"SELECT count(*) FROM outbox",
			} {
				var n int
				if err := f.DB.QueryRowContext(t.Context(), count).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 0 {
					t.Errorf("%s = %d after a refused create, want 0", count, n)
				}
			}
		})
	}
}

func TestSchemaRefusesDuplicateIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := orderstoretest.New(t)
	o := create(t, f)
	_, err := f.DB.Exec(`INSERT INTO orders (order_id, user_id, idempotency_key, request_digest,
		status, currency, total, created_at, updated_at)
		SELECT ?, user_id, idempotency_key, request_digest, status, currency, total, 0, 0
		FROM orders WHERE order_id = ?`, uuid.NewString(), o.ID)
	if err == nil {
		t.Error("a second order with the same user and idempotency key was stored")
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	f := orderstoretest.New(t)
	o := create(t, f)

	tests := []struct {
		name    string
		orderID string
		userID  string
		wantErr error
	}{
		{"owner", o.ID, o.UserID, nil},
		{"another user", o.ID, uuid.NewString(), orderstore.ErrNotFound},
		{"missing", uuid.NewString(), o.UserID, orderstore.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := f.Store.Get(t.Context(), tt.orderID, tt.userID)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get = %v, want %v", err, tt.wantErr)
			}
			if err == nil && got.ID != o.ID {
				t.Errorf("Get returned order %s, want %s", got.ID, o.ID)
			}
		})
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	f := orderstoretest.New(t)
	user := uuid.NewString()
	ctx := orderstoretest.UserContext(t.Context(), user)
	var ids []string
	for i := range 5 {
		o, _, err := f.Store.Create(ctx, newOrder(user, "list-key-"+string(rune('a'+i))))
		if err != nil {
			t.Fatal(err)
		}
		ids = append([]string{o.ID}, ids...) // newest first
	}
	create(t, f) // another user's

	var got []string
	var after *orderstore.Cursor
	for page := 0; ; page++ {
		orders, err := f.Store.List(t.Context(), user, 2, after)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range orders {
			got = append(got, o.ID)
			if len(o.Items) != 2 {
				t.Errorf("order %s listed with %d items, want 2", o.ID, len(o.Items))
			}
		}
		if len(orders) < 2 {
			break
		}
		last := orders[len(orders)-1]
		after = &orderstore.Cursor{CreateTime: last.CreateTime, OrderID: last.ID}
		if page > 5 {
			t.Fatal("paging does not end")
		}
	}
	if diff := cmp.Diff(ids, got); diff != "" {
		t.Errorf("listed ids (-want +got):\n%s", diff)
	}
}

func TestSettlePayment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		from        orderstore.Status
		payment     func(orderstore.Order) orderstore.Payment
		wantErr     error
		wantStatus  orderstore.Status
		wantReason  string
		wantChanged bool
	}{
		{
			name: "paid", from: orderstore.StatusPendingPayment, payment: paid,
			wantStatus: orderstore.StatusPaid, wantChanged: true,
		},
		{
			name: "failed", from: orderstore.StatusPendingPayment, payment: failed,
			wantStatus: orderstore.StatusPaymentFailed, wantReason: "card declined", wantChanged: true,
		},
		{
			name: "paid twice", from: orderstore.StatusPaid, payment: paid,
			wantStatus: orderstore.StatusPaid,
		},
		{
			name: "failure after payment", from: orderstore.StatusPaid, payment: failed,
			wantStatus: orderstore.StatusPaid,
		},
		{
			name: "payment after failure", from: orderstore.StatusPaymentFailed, payment: paid,
			wantStatus: orderstore.StatusPaymentFailed, wantReason: "card declined",
		},
		{
			name: "payment after cancel", from: orderstore.StatusCancelled, payment: paid,
			wantStatus: orderstore.StatusCancelled,
		},
		{
			name: "another user", from: orderstore.StatusPendingPayment,
			payment: func(o orderstore.Order) orderstore.Payment {
				p := paid(o)
				p.UserID = uuid.NewString()
				return p
			},
			wantErr: orderstore.ErrOwnerMismatch, wantStatus: orderstore.StatusPendingPayment,
		},
		{
			name: "another user, order settled", from: orderstore.StatusPaid,
			payment: func(o orderstore.Order) orderstore.Payment {
				p := failed(o)
				p.UserID = uuid.NewString()
				return p
			},
			wantErr: orderstore.ErrOwnerMismatch, wantStatus: orderstore.StatusPaid,
		},
		{
			name: "amount differs", from: orderstore.StatusPendingPayment,
			payment: func(o orderstore.Order) orderstore.Payment {
				p := paid(o)
				p.Amount--
				return p
			},
			wantErr: orderstore.ErrAmountMismatch, wantStatus: orderstore.StatusPendingPayment,
		},
		{
			name: "currency differs", from: orderstore.StatusPendingPayment,
			payment: func(o orderstore.Order) orderstore.Payment {
				p := paid(o)
				p.Currency = "USD"
				return p
			},
			wantErr: orderstore.ErrAmountMismatch, wantStatus: orderstore.StatusPendingPayment,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := orderstoretest.New(t)
			before := inStatus(t, f, tt.from)
			changes, stop := f.Store.Watch(before.ID)
			defer stop()

			got, changed, err := f.Store.SettlePayment(t.Context(), tt.payment(before))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("SettlePayment = %v, want %v", err, tt.wantErr)
			}
			if changed != tt.wantChanged {
				t.Errorf("changed = %t, want %t", changed, tt.wantChanged)
			}
			stored, err := f.Store.Get(t.Context(), before.ID, before.UserID)
			if err != nil {
				t.Fatal(err)
			}
			if stored.Status != tt.wantStatus || stored.FailureReason != tt.wantReason {
				t.Errorf("stored status %s %q, want %s %q",
					stored.Status, stored.FailureReason, tt.wantStatus, tt.wantReason)
			}
			if tt.wantErr == nil {
				if diff := cmp.Diff(stored, got); diff != "" {
					t.Errorf("returned order (-stored +returned):\n%s", diff)
				}
			}
			if !tt.wantChanged && !stored.UpdateTime.Equal(before.UpdateTime) {
				t.Errorf("update time moved from %v to %v without a change", before.UpdateTime, stored.UpdateTime)
			}
			if woken := len(changes) == 1; woken != tt.wantChanged {
				t.Errorf("watcher woken = %t, want %t", woken, tt.wantChanged)
			}
		})
	}
}

func TestSettlePaymentOfMissingOrder(t *testing.T) {
	t.Parallel()
	f := orderstoretest.New(t)
	_, _, err := f.Store.SettlePayment(t.Context(), orderstore.Payment{
		OrderID: uuid.NewString(), UserID: uuid.NewString(), Paid: true, Currency: "EUR", Amount: 1,
	})
	if !errors.Is(err, orderstore.ErrNotFound) {
		t.Errorf("SettlePayment = %v, want %v", err, orderstore.ErrNotFound)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		from       orderstore.Status
		refunded   bool
		otherUser  bool
		wantErr    error
		wantStatus orderstore.Status
		wantEvent  bool
	}{
		{name: "paid and refunded", from: orderstore.StatusPaid, refunded: true,
			wantStatus: orderstore.StatusCancelled, wantEvent: true},
		{name: "payment failed", from: orderstore.StatusPaymentFailed,
			wantStatus: orderstore.StatusCancelled, wantEvent: true},
		{name: "cancelled already", from: orderstore.StatusCancelled, refunded: true,
			wantStatus: orderstore.StatusCancelled},
		{name: "pending payment", from: orderstore.StatusPendingPayment,
			wantErr: orderstore.ErrPaymentPending, wantStatus: orderstore.StatusPendingPayment},
		{name: "paid, not refunded", from: orderstore.StatusPaid,
			wantErr: orderstore.ErrStatusConflict, wantStatus: orderstore.StatusPaid},
		{name: "payment failed, refunded", from: orderstore.StatusPaymentFailed, refunded: true,
			wantErr: orderstore.ErrStatusConflict, wantStatus: orderstore.StatusPaymentFailed},
		{name: "another user", from: orderstore.StatusPaid, refunded: true, otherUser: true,
			wantErr: orderstore.ErrNotFound, wantStatus: orderstore.StatusPaid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := orderstoretest.New(t)
			before := inStatus(t, f, tt.from)
			eventsBefore := len(f.Events(t))
			changes, stop := f.Store.Watch(before.ID)
			defer stop()
			user := before.UserID
			if tt.otherUser {
				user = uuid.NewString()
			}

			got, err := f.Store.Cancel(orderstoretest.UserContext(t.Context(), user), before.ID, user, tt.refunded)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Cancel = %v, want %v", err, tt.wantErr)
			}
			stored, err := f.Store.Get(t.Context(), before.ID, before.UserID)
			if err != nil {
				t.Fatal(err)
			}
			if stored.Status != tt.wantStatus {
				t.Errorf("stored status %s, want %s", stored.Status, tt.wantStatus)
			}
			if tt.wantErr == nil && got.Status != tt.wantStatus {
				t.Errorf("returned status %s, want %s", got.Status, tt.wantStatus)
			}

			var want []proto.Message
			if tt.wantEvent {
				want = []proto.Message{&orderv1.OrderCancelled{
					OrderId: before.ID, UserId: before.UserID, Refunded: tt.refunded,
					CancelTime: timestamp(stored.UpdateTime),
				}}
			}
			gotEvents := f.Events(t)[eventsBefore:]
			if diff := cmp.Diff(want, gotEvents, protocmp.Transform(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("new events (-want +got):\n%s", diff)
			}
			if woken := len(changes) == 1; woken != tt.wantEvent {
				t.Errorf("watcher woken = %t, want %t", woken, tt.wantEvent)
			}
		})
	}
}

func TestCancelWithoutTokenChangesNothing(t *testing.T) {
	t.Parallel()
	f := orderstoretest.New(t)
	o := inStatus(t, f, orderstore.StatusPaymentFailed)
	if _, err := f.Store.Cancel(t.Context(), o.ID, o.UserID, false); err == nil {
		t.Fatal("Cancel succeeded without a transaction token for its event")
	}
	stored, err := f.Store.Get(t.Context(), o.ID, o.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Status != orderstore.StatusPaymentFailed {
		t.Errorf("status %s after a failed cancel, want %s", stored.Status, orderstore.StatusPaymentFailed)
	}
}

func TestWatch(t *testing.T) {
	t.Parallel()
	f := orderstoretest.New(t)
	watched, other := create(t, f), create(t, f)
	changes, stop := f.Store.Watch(watched.ID)
	otherChanges, stopOther := f.Store.Watch(other.ID)
	defer stopOther()
	if n := f.Store.Watches(); n != 2 {
		t.Errorf("Watches = %d, want 2", n)
	}

	// Two changes before the watcher reads merge into one wake-up.
	if _, _, err := f.Store.SettlePayment(t.Context(), paid(watched)); err != nil {
		t.Fatal(err)
	}
	ctx := orderstoretest.UserContext(t.Context(), watched.UserID)
	if _, err := f.Store.Cancel(ctx, watched.ID, watched.UserID, true); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes:
	case <-time.After(5 * time.Second):
		t.Fatal("watcher not woken by a status change")
	}
	if len(changes) != 0 {
		t.Error("more than one pending wake-up")
	}
	if len(otherChanges) != 0 {
		t.Error("the watcher of another order was woken")
	}

	stop()
	stop() // a second stop is harmless
	if n := f.Store.Watches(); n != 1 {
		t.Errorf("Watches after stop = %d, want 1", n)
	}
}
