// Package orderstore keeps the order service's orders in SQLite and
// publishes the events their changes cause through the outbox, in the same
// transaction as the change.
//
// Every method that takes a user id acts for that user only: another
// user's order is reported as [ErrNotFound], exactly like a missing one.
// Status changes follow the order's life and nothing else:
// PENDING_PAYMENT becomes PAID or PAYMENT_FAILED once, and either of those
// becomes CANCELLED. A change the life does not allow is refused and
// writes nothing.
package orderstore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"example.com/rampart/platform/sqlitedb"
	orderv1 "example.com/rampart/proto/order/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations creates the store's tables; pass it to the workload's OpenDB.
var Migrations = sqlitedb.Migrations{Name: "order", FS: mustSub(migrationFiles, "migrations")}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// Errors returned by the store. Callers match them with errors.Is.
var (
	ErrNotFound            = errors.New("orderstore: order not found")
	ErrIdempotencyConflict = errors.New("orderstore: idempotency key reused for another request")
	ErrPaymentPending      = errors.New("orderstore: order is waiting for its payment")
	ErrStatusConflict      = errors.New("orderstore: order status does not allow the change")
	ErrOwnerMismatch       = errors.New("orderstore: payment is for another user than the order's")
	ErrAmountMismatch      = errors.New("orderstore: payment amount differs from the order total")
)

// Status is where an order stands.
type Status string

// The statuses of an order, as stored.
const (
	StatusPendingPayment Status = "PENDING_PAYMENT"
	StatusPaid           Status = "PAID"
	StatusPaymentFailed  Status = "PAYMENT_FAILED"
	StatusCancelled      Status = "CANCELLED"
)

// Item is one line of an order, priced when the order was placed. Amounts
// are in minor units of the order's currency.
type Item struct {
	SKU       string
	Name      string
	Quantity  int32
	UnitPrice int64
	LineTotal int64
}

// Order is a stored order.
type Order struct {
	ID            string
	UserID        string
	Status        Status
	Items         []Item
	Currency      string
	Total         int64
	FailureReason string
	CreateTime    time.Time
	UpdateTime    time.Time
}

// Outbox stores events in the transaction that causes them and relays them
// once it commits; the workload's outbox is one.
type Outbox interface {
	Enqueue(ctx context.Context, tx *sql.Tx, event proto.Message) error
	Notify()
}

// Store is the order service's storage. It is safe for concurrent use.
type Store struct {
	db       *sql.DB
	outbox   Outbox
	notifier notifier
}

// New returns a store on db, migrated with [Migrations] and the outbox's
// migrations, that publishes events through outbox.
func New(db *sql.DB, outbox Outbox) *Store {
	return &Store{db: db, outbox: outbox}
}

// NewOrder is an order to place: who places it, under which idempotency
// key, what it holds, and how it is to be paid.
type NewOrder struct {
	UserID         string
	IdempotencyKey string
	PaymentMethod  string
	Currency       string
	Items          []Item
	Total          int64
}

// Create stores o as a new order, PENDING_PAYMENT, with its items and the
// OrderCreated event that asks for its payment, all in one transaction;
// ctx must carry the transaction token the event is published with. It
// reports whether it created the order.
//
// If the user placed an order with the same idempotency key before,
// Create returns that order as it is now and creates nothing, provided
// the request is the same: the same SKUs and quantities, in any order,
// and the same payment method. A different request under a used key is
// refused with [ErrIdempotencyConflict].
func (s *Store) Create(ctx context.Context, o NewOrder) (Order, bool, error) {
	digest := requestDigest(o)
	now := timestamp()
	order := Order{
		ID:         uuid.Must(uuid.NewV7()).String(),
		UserID:     o.UserID,
		Status:     StatusPendingPayment,
		Items:      slices.Clone(o.Items),
		Currency:   o.Currency,
		Total:      o.Total,
		CreateTime: now,
		UpdateTime: now,
	}
	created := false
	err := sqlitedb.InTx(ctx, s.db, func(tx *sql.Tx) error {
		existing, storedDigest, err := byIdempotencyKey(ctx, tx, o.UserID, o.IdempotencyKey)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return err
		case !bytes.Equal(storedDigest, digest):
			return ErrIdempotencyConflict
		default:
			order = existing
			return nil
		}
		if err := insertOrder(ctx, tx, order, o.IdempotencyKey, digest); err != nil {
			return err
		}
		created = true
		return s.outbox.Enqueue(ctx, tx, &orderv1.OrderCreated{
			OrderId:       order.ID,
			UserId:        order.UserID,
			Total:         &moneyv1.Money{CurrencyCode: order.Currency, Amount: order.Total},
			PaymentMethod: o.PaymentMethod,
			CreateTime:    timestamppb.New(order.CreateTime),
		})
	})
	if err != nil {
		return Order{}, false, fmt.Errorf("creating order: %w", err)
	}
	if created {
		s.outbox.Notify()
	}
	return order, created, nil
}

// requestDigest identifies what a CreateOrder request asked for, so that a
// retry can be told from a different request. Items are sorted by SKU, so
// their order does not matter; every field is length-prefixed, so no two
// requests encode alike.
func requestDigest(o NewOrder) []byte {
	items := slices.SortedFunc(slices.Values(o.Items), func(a, b Item) int {
		return cmp.Compare(a.SKU, b.SKU)
	})
	var buf []byte
	appendString := func(s string) {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	appendString(o.PaymentMethod)
	buf = binary.AppendUvarint(buf, uint64(len(items)))
	for _, it := range items {
		appendString(it.SKU)
		buf = binary.AppendVarint(buf, int64(it.Quantity))
	}
	sum := sha256.Sum256(buf)
	return sum[:]
}

func insertOrder(ctx context.Context, tx *sql.Tx, o Order, key string, digest []byte) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO orders (order_id, user_id, idempotency_key,
		request_digest, status, currency, total, failure_reason, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, '', ?, ?)`,
		o.ID, o.UserID, key, digest, o.Status, o.Currency, o.Total,
		o.CreateTime.UnixNano(), o.UpdateTime.UnixNano())
	if err != nil {
		return fmt.Errorf("inserting order: %w", err)
	}
	for i, it := range o.Items {
		_, err := tx.ExecContext(ctx, `INSERT INTO order_items (order_id, line, sku, name,
			quantity, unit_price, line_total) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			o.ID, i, it.SKU, it.Name, it.Quantity, it.UnitPrice, it.LineTotal)
		if err != nil {
			return fmt.Errorf("inserting order item %s: %w", it.SKU, err)
		}
	}
	return nil
}

// Get returns the user's order orderID, or [ErrNotFound].
func (s *Store) Get(ctx context.Context, orderID, userID string) (Order, error) {
	o, err := getOrder(ctx, s.db, orderID)
	if err == nil && o.UserID != userID {
		err = ErrNotFound
	}
	if err != nil {
		return Order{}, fmt.Errorf("reading order: %w", err)
	}
	return o, nil
}

// Cursor is a position in a user's orders, newest first: the create time
// and id of the last order of a page.
type Cursor struct {
	CreateTime time.Time
	OrderID    string
}

// List returns at most limit of the user's orders, newest first, starting
// after the cursor when there is one.
func (s *Store) List(ctx context.Context, userID string, limit int, after *Cursor) (
	[]Order, error) {
	query := `SELECT ` + orderColumns + ` FROM orders WHERE user_id = ?`
	args := []any{userID}
	if after != nil {
		query += ` AND (created_at, order_id) < (?, ?)`
		args = append(args, after.CreateTime.UnixNano(), after.OrderID)
	}
	query += ` ORDER BY created_at DESC, order_id DESC LIMIT ?`
	args = append(args, limit)

	orders, err := scanOrders(s.db.QueryContext(ctx, query, args...))
	if err != nil {
		return nil, fmt.Errorf("listing orders: %w", err)
	}
	for i := range orders {
		if orders[i].Items, err = items(ctx, s.db, orders[i].ID); err != nil {
			return nil, fmt.Errorf("listing orders: %w", err)
		}
	}
	return orders, nil
}

func scanOrders(rows *sql.Rows, err error) ([]Order, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var orders []Order
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, err
		}
		orders = append(orders, o)
	}
	return orders, rows.Err()
}

// Cancel cancels the user's order and stores the OrderCancelled event in
// the same transaction; ctx must carry the transaction token the event is
// published with. refunded says whether the order's payment was refunded
// first, which a PAID order requires and a PAYMENT_FAILED one forbids.
//
// A CANCELLED order is returned unchanged, with no new event. An order
// still PENDING_PAYMENT is refused with [ErrPaymentPending]; a PAID order
// without a refund, or a PAYMENT_FAILED one with one, with
// [ErrStatusConflict]; another user's order with [ErrNotFound].
func (s *Store) Cancel(ctx context.Context, orderID, userID string, refunded bool) (Order, error) {
	var order Order
	changed := false
	err := sqlitedb.InTx(ctx, s.db, func(tx *sql.Tx) error {
		o, err := getOrder(ctx, tx, orderID)
		if err == nil && o.UserID != userID {
			err = ErrNotFound
		}
		if err != nil {
			return err
		}
		order = o
		switch {
		case o.Status == StatusCancelled:
			return nil
		case o.Status == StatusPendingPayment:
			return ErrPaymentPending
		case refunded != (o.Status == StatusPaid):
			return fmt.Errorf("%w: %s order, refunded %t", ErrStatusConflict, o.Status, refunded)
		}
		if order, err = setStatus(ctx, tx, o, StatusCancelled, o.FailureReason); err != nil {
			return err
		}
		changed = true
		return s.outbox.Enqueue(ctx, tx, &orderv1.OrderCancelled{
			OrderId:    order.ID,
			UserId:     order.UserID,
			Refunded:   refunded,
			CancelTime: timestamppb.New(order.UpdateTime),
		})
	})
	if err != nil {
		return Order{}, fmt.Errorf("cancelling order: %w", err)
	}
	if changed {
		s.outbox.Notify()
		s.notifier.notify(order.ID)
	}
	return order, nil
}

// Payment is the settled payment of an order, as the payment service
// reports it. Currency and Amount are checked only when Paid: a failed
// payment carries no amount.
type Payment struct {
	OrderID       string
	UserID        string
	Paid          bool
	Currency      string
	Amount        int64
	FailureReason string
}

// SettlePayment moves a PENDING_PAYMENT order to PAID or PAYMENT_FAILED,
// recording the failure reason, and reports whether it changed the order.
// An order that was settled or cancelled already is returned unchanged, so
// that a duplicate or late report changes nothing.
//
// It refuses, changing nothing, a payment for an order that does not exist
// ([ErrNotFound]), one for another user than the order's
// ([ErrOwnerMismatch]), and one whose amount is not the order's total
// ([ErrAmountMismatch]), whatever the order's status.
func (s *Store) SettlePayment(ctx context.Context, p Payment) (Order, bool, error) {
	var order Order
	changed := false
	err := sqlitedb.InTx(ctx, s.db, func(tx *sql.Tx) error {
		o, err := getOrder(ctx, tx, p.OrderID)
		if err != nil {
			return err
		}
		order = o
		switch {
		case o.UserID != p.UserID:
			return ErrOwnerMismatch
		case p.Paid && (p.Currency != o.Currency || p.Amount != o.Total):
			return fmt.Errorf("%w: paid %d %s, total %d %s",
				ErrAmountMismatch, p.Amount, p.Currency, o.Total, o.Currency)
		case o.Status != StatusPendingPayment:
			return nil
		}
		status, reason := StatusPaid, ""
		if !p.Paid {
			status, reason = StatusPaymentFailed, p.FailureReason
		}
		order, err = setStatus(ctx, tx, o, status, reason)
		changed = err == nil
		return err
	})
	if err != nil {
		return Order{}, false, fmt.Errorf("settling payment of order %s: %w", p.OrderID, err)
	}
	if changed {
		s.notifier.notify(order.ID)
	}
	return order, changed, nil
}

// Watch returns a channel that receives a value after each committed
// status change of the order orderID, and a function that stops the watch
// and must be called. Changes the reader has not taken yet are merged into
// one value, so read the order again on each. Watch does not check who
// owns the order: check before telling anyone what it holds.
func (s *Store) Watch(orderID string) (<-chan struct{}, func()) {
	return s.notifier.subscribe(orderID)
}

// Watches returns how many watches are open, over all orders: a gauge of
// the streams held open, and a way to check that they are released.
func (s *Store) Watches() int { return s.notifier.count() }

// setStatus changes o's status in tx, only if it has not changed since o
// was read, and returns o as changed.
func setStatus(ctx context.Context, tx *sql.Tx, o Order, status Status,
	reason string) (Order, error) {
	now := timestamp()
	res, err := tx.ExecContext(ctx, `UPDATE orders SET status = ?, failure_reason = ?,
		updated_at = ? WHERE order_id = ? AND status = ?`,
		status, reason, now.UnixNano(), o.ID, o.Status)
	if err != nil {
		return Order{}, fmt.Errorf("updating order status: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return Order{}, fmt.Errorf("%w: %s changed meanwhile", ErrStatusConflict, o.ID)
	}
	o.Status, o.FailureReason, o.UpdateTime = status, reason, now
	return o, nil
}

// timestamp is the time now, to the nanosecond the store keeps.
func timestamp() time.Time {
	return time.Unix(0, time.Now().UnixNano()).UTC()
}

// querier is what reads need of *sql.DB and *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const orderColumns = `order_id, user_id, status, currency, total, failure_reason,
	created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

// scanOrder reads a row of orderColumns, then the columns of extra.
func scanOrder(row scanner, extra ...any) (Order, error) {
	var o Order
	var created, updated int64
	dest := append([]any{&o.ID, &o.UserID, &o.Status, &o.Currency, &o.Total, &o.FailureReason,
		&created, &updated}, extra...)
	if err := row.Scan(dest...); err != nil {
		return Order{}, err
	}
	o.CreateTime, o.UpdateTime = time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
	return o, nil
}

// getOrder reads an order and its items by id alone.
func getOrder(ctx context.Context, q querier, orderID string) (Order, error) {
	o, err := scanOrder(q.QueryRowContext(ctx,
		`SELECT `+orderColumns+` FROM orders WHERE order_id = ?`, orderID))
	return withItems(ctx, q, o, err)
}

// byIdempotencyKey reads the user's order placed with key, and the digest
// of the request that placed it.
func byIdempotencyKey(ctx context.Context, q querier, userID, key string) (
	Order, []byte, error) {
	var digest []byte
	o, err := scanOrder(q.QueryRowContext(ctx, `SELECT `+orderColumns+`, request_digest
		FROM orders WHERE user_id = ? AND idempotency_key = ?`, userID, key), &digest)
	o, err = withItems(ctx, q, o, err)
	return o, digest, err
}

// withItems completes an order just scanned, with scanErr, by its items.
func withItems(ctx context.Context, q querier, o Order, scanErr error) (Order, error) {
	if errors.Is(scanErr, sql.ErrNoRows) {
		return Order{}, ErrNotFound
	}
	if scanErr != nil {
		return Order{}, fmt.Errorf("reading order: %w", scanErr)
	}
	var err error
	if o.Items, err = items(ctx, q, o.ID); err != nil {
		return Order{}, err
	}
	return o, nil
}

func items(ctx context.Context, q querier, orderID string) ([]Item, error) {
	rows, err := q.QueryContext(ctx, `SELECT sku, name, quantity, unit_price, line_total
		FROM order_items WHERE order_id = ? ORDER BY line`, orderID)
	if err != nil {
		return nil, fmt.Errorf("reading order items: %w", err)
	}
	defer rows.Close()
	var out []Item
	for rows.Next() {
		var it Item
		err := rows.Scan(&it.SKU, &it.Name, &it.Quantity, &it.UnitPrice, &it.LineTotal)
		if err != nil {
			return nil, fmt.Errorf("reading order items: %w", err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading order items: %w", err)
	}
	return out, nil
}
