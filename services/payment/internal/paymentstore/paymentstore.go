// Package paymentstore keeps the payment service's payments in SQLite and
// publishes the events their outcomes cause through the outbox, in the
// same transaction as the outcome.
//
// A payment goes PENDING → SUCCEEDED or FAILED, once, and SUCCEEDED →
// REFUNDED. A change its life does not allow is refused and writes
// nothing.
package paymentstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"example.com/rampart/platform/sqlitedb"
	paymentv1 "example.com/rampart/proto/payment/v1"
	moneyv1 "example.com/rampart/proto/rampart/money/v1"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations creates the store's tables; pass it to the workload's OpenDB.
var Migrations = sqlitedb.Migrations{Name: "payment", FS: mustSub(migrationFiles, "migrations")}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// Errors returned by the store. Callers match them with errors.Is.
var (
	ErrNotFound      = errors.New("paymentstore: payment not found")
	ErrConflict      = errors.New("paymentstore: order has a payment for another user or amount")
	ErrNotRefundable = errors.New("paymentstore: payment has not succeeded")
)

// MaxReasonLength is the longest failure reason stored, in characters;
// longer ones are cut, as the PaymentFailed event allows no more.
const MaxReasonLength = 256

// Status is where a payment stands.
type Status string

// The statuses of a payment, as stored.
const (
	StatusPending   Status = "PENDING"
	StatusSucceeded Status = "SUCCEEDED"
	StatusFailed    Status = "FAILED"
	StatusRefunded  Status = "REFUNDED"
)

// Payment is a stored payment. Its ID is the idempotency key of its charge
// at the processor.
type Payment struct {
	ID            string
	OrderID       string
	UserID        string
	Status        Status
	Currency      string
	Amount        int64
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

// Store is the payment service's storage. It is safe for concurrent use.
type Store struct {
	db     *sql.DB
	outbox Outbox
}

// New returns a store on db, migrated with [Migrations] and the outbox's
// migrations, that publishes events through outbox.
func New(db *sql.DB, outbox Outbox) *Store {
	return &Store{db: db, outbox: outbox}
}

// NewPayment is the payment an order asks for.
type NewPayment struct {
	OrderID  string
	UserID   string
	Currency string
	Amount   int64
}

// Start returns the order's payment, creating it PENDING if the order has
// none yet, and reports whether it created it. An order has one payment
// at most: starting it again returns the first, whatever its status. A
// request that differs from the first in user, currency or amount is
// refused with [ErrConflict].
func (s *Store) Start(ctx context.Context, p NewPayment) (Payment, bool, error) {
	now := timestamp()
	payment := Payment{
		ID:         uuid.Must(uuid.NewV7()).String(),
		OrderID:    p.OrderID,
		UserID:     p.UserID,
		Status:     StatusPending,
		Currency:   p.Currency,
		Amount:     p.Amount,
		CreateTime: now,
		UpdateTime: now,
	}
	created := false
	err := sqlitedb.InTx(ctx, s.db, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO payments (payment_id, order_id, user_id,
			status, currency, amount, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (order_id) DO NOTHING`,
			payment.ID, payment.OrderID, payment.UserID, payment.Status, payment.Currency,
			payment.Amount, now.UnixNano(), now.UnixNano())
		if err != nil {
			return fmt.Errorf("inserting payment: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("inserting payment: %w", err)
		}
		if n == 1 {
			created = true
			return nil
		}
		existing, err := scanPayment(tx.QueryRowContext(ctx,
			`SELECT `+paymentColumns+` FROM payments WHERE order_id = ?`, p.OrderID))
		if err != nil {
			return err
		}
		payment = existing
		if existing.UserID != p.UserID || existing.Currency != p.Currency ||
			existing.Amount != p.Amount {
			return ErrConflict
		}
		return nil
	})
	if err != nil {
		return Payment{}, false, fmt.Errorf("starting payment of order %s: %w", p.OrderID, err)
	}
	return payment, created, nil
}

// Outcome is what the processor made of a charge.
type Outcome struct {
	Succeeded bool
	// FailureReason says why a charge failed; it is cut to
	// [MaxReasonLength] characters.
	FailureReason string
}

// Settle records the outcome of a PENDING payment's charge and stores the
// PaymentSucceeded or PaymentFailed event in the same transaction; ctx
// must carry the transaction token the event is published with. It
// reports whether it changed the payment: a payment settled already is
// returned unchanged, with no new event. It returns [ErrNotFound] for a
// payment that does not exist.
func (s *Store) Settle(ctx context.Context, paymentID string, outcome Outcome) (
	Payment, bool, error) {
	var payment Payment
	changed := false
	err := sqlitedb.InTx(ctx, s.db, func(tx *sql.Tx) error {
		p, err := get(ctx, tx, `payment_id = ?`, paymentID)
		if err != nil {
			return err
		}
		payment = p
		if p.Status != StatusPending {
			return nil
		}
		status, reason := StatusSucceeded, ""
		if !outcome.Succeeded {
			status, reason = StatusFailed, cut(outcome.FailureReason, MaxReasonLength)
		}
		if payment, err = setStatus(ctx, tx, p, status, reason); err != nil {
			return err
		}
		changed = true
		return s.outbox.Enqueue(ctx, tx, settledEvent(payment))
	})
	if err != nil {
		return Payment{}, false, fmt.Errorf("settling payment %s: %w", paymentID, err)
	}
	if changed {
		s.outbox.Notify()
	}
	return payment, changed, nil
}

func settledEvent(p Payment) proto.Message {
	settled := timestamppb.New(p.UpdateTime)
	if p.Status == StatusSucceeded {
		return &paymentv1.PaymentSucceeded{
			PaymentId:  p.ID,
			OrderId:    p.OrderID,
			UserId:     p.UserID,
			Amount:     &moneyv1.Money{CurrencyCode: p.Currency, Amount: p.Amount},
			SettleTime: settled,
		}
	}
	return &paymentv1.PaymentFailed{
		PaymentId:  p.ID,
		OrderId:    p.OrderID,
		UserId:     p.UserID,
		Reason:     p.FailureReason,
		SettleTime: settled,
	}
}

// MarkRefunded records that a SUCCEEDED payment was refunded. A REFUNDED
// payment is returned unchanged; a PENDING or FAILED one is refused with
// [ErrNotRefundable], and a missing one with [ErrNotFound].
func (s *Store) MarkRefunded(ctx context.Context, paymentID string) (Payment, error) {
	var payment Payment
	err := sqlitedb.InTx(ctx, s.db, func(tx *sql.Tx) error {
		p, err := get(ctx, tx, `payment_id = ?`, paymentID)
		if err != nil {
			return err
		}
		payment = p
		switch p.Status {
		case StatusRefunded:
			return nil
		case StatusSucceeded:
			payment, err = setStatus(ctx, tx, p, StatusRefunded, "")
			return err
		default:
			return fmt.Errorf("%w: it is %s", ErrNotRefundable, p.Status)
		}
	})
	if err != nil {
		return Payment{}, fmt.Errorf("marking payment %s refunded: %w", paymentID, err)
	}
	return payment, nil
}

// ByOrder returns the payment of the user's order orderID. A payment of
// another user's order is reported as [ErrNotFound], like a missing one.
func (s *Store) ByOrder(ctx context.Context, orderID, userID string) (Payment, error) {
	p, err := get(ctx, s.db, `order_id = ? AND user_id = ?`, orderID, userID)
	if err != nil {
		return Payment{}, fmt.Errorf("reading payment of order %s: %w", orderID, err)
	}
	return p, nil
}

// setStatus changes p's status in tx, only if it has not changed since p
// was read, and returns p as changed.
func setStatus(ctx context.Context, tx *sql.Tx, p Payment, status Status,
	reason string) (Payment, error) {
	now := timestamp()
	res, err := tx.ExecContext(ctx, `UPDATE payments SET status = ?, failure_reason = ?,
		updated_at = ? WHERE payment_id = ? AND status = ?`,
		status, reason, now.UnixNano(), p.ID, p.Status)
	if err != nil {
		return Payment{}, fmt.Errorf("updating payment status: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return Payment{}, fmt.Errorf("updating payment status: %s changed meanwhile", p.ID)
	}
	p.Status, p.FailureReason, p.UpdateTime = status, reason, now
	return p, nil
}

// timestamp is the time now, to the nanosecond the store keeps.
func timestamp() time.Time {
	return time.Unix(0, time.Now().UnixNano()).UTC()
}

const paymentColumns = `payment_id, order_id, user_id, status, currency, amount,
	failure_reason, created_at, updated_at`

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// get reads the one payment that where selects.
func get(ctx context.Context, q queryRower, where string, args ...any) (Payment, error) {
	return scanPayment(q.QueryRowContext(ctx,
		`SELECT `+paymentColumns+` FROM payments WHERE `+where, args...))
}

func scanPayment(row *sql.Row) (Payment, error) {
	var p Payment
	var created, updated int64
	err := row.Scan(&p.ID, &p.OrderID, &p.UserID, &p.Status, &p.Currency, &p.Amount,
		&p.FailureReason, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Payment{}, ErrNotFound
	}
	if err != nil {
		return Payment{}, fmt.Errorf("reading payment: %w", err)
	}
	p.CreateTime, p.UpdateTime = time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
	return p, nil
}

// cut returns s cut to at most n characters.
func cut(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}
