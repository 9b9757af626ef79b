package catalog_test

import (
	"errors"
	"math"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"

	"example.com/rampart/services/order/internal/catalog"
)

func TestDefaultMatchesContract(t *testing.T) {
	t.Parallel()
	// The pattern of ItemRequest.sku in order/v1/order.proto: a SKU that
	// does not match could never be ordered.
	skuPattern := regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{1,31}$`)
	products := catalog.Default().Products()
	if n := len(products); n < 5 || n > 8 {
		t.Errorf("catalog holds %d products, want 5 to 8", n)
	}
	for _, p := range products {
		if !skuPattern.MatchString(p.SKU) {
			t.Errorf("sku %q does not match %s", p.SKU, skuPattern)
		}
		if p.Name == "" || p.Price <= 0 {
			t.Errorf("product %+v needs a name and a positive price", p)
		}
	}
}

func testCatalog(t *testing.T) (*catalog.Catalog, catalog.Product, catalog.Product) {
	t.Helper()
	tea := catalog.Product{SKU: "TEA", Name: "Tea", Price: 650}
	mug := catalog.Product{SKU: "MUG", Name: "Mug", Price: 1400}
	gold := catalog.Product{SKU: "GOLD", Name: "Gold", Price: math.MaxInt64 / 2}
	c, err := catalog.New([]catalog.Product{tea, mug, gold})
	if err != nil {
		t.Fatal(err)
	}
	return c, tea, mug
}

func TestPrice(t *testing.T) {
	t.Parallel()
	c, tea, mug := testCatalog(t)
	tests := []struct {
		name      string
		requests  []catalog.Request
		wantLines []catalog.Line
		wantTotal int64
	}{
		{
			name:      "one line",
			requests:  []catalog.Request{{SKU: "TEA", Quantity: 3}},
			wantLines: []catalog.Line{{Product: tea, Quantity: 3, Total: 1950}},
			wantTotal: 1950,
		},
		{
			name:     "lines keep the request order",
			requests: []catalog.Request{{SKU: "MUG", Quantity: 2}, {SKU: "TEA", Quantity: 1}},
			wantLines: []catalog.Line{
				{Product: mug, Quantity: 2, Total: 2800},
				{Product: tea, Quantity: 1, Total: 650},
			},
			wantTotal: 3450,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lines, total, err := c.Price(tt.requests)
			if err != nil {
				t.Fatalf("Price: %v", err)
			}
			if diff := cmp.Diff(tt.wantLines, lines); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
			if total != tt.wantTotal {
				t.Errorf("total = %d, want %d", total, tt.wantTotal)
			}
		})
	}
}

func TestPriceRefuses(t *testing.T) {
	t.Parallel()
	c, _, _ := testCatalog(t)
	unknown := func(sku string) func(error) bool {
		return func(err error) bool {
			var u *catalog.UnknownSKUError
			return errors.As(err, &u) && u.SKU == sku
		}
	}
	is := func(target error) func(error) bool {
		return func(err error) bool { return errors.Is(err, target) }
	}
	tests := []struct {
		name     string
		requests []catalog.Request
		match    func(error) bool
	}{
		{"unknown sku", []catalog.Request{{SKU: "TEA", Quantity: 1}, {SKU: "COFFEE", Quantity: 1}},
			unknown("COFFEE")},
		{"line overflows", []catalog.Request{{SKU: "GOLD", Quantity: 3}}, is(catalog.ErrTooLarge)},
		{"total overflows", []catalog.Request{{SKU: "GOLD", Quantity: 2}, {SKU: "TEA", Quantity: 1}},
			is(catalog.ErrTooLarge)},
		{"no quantity", []catalog.Request{{SKU: "TEA", Quantity: 0}},
			func(err error) bool { return err != nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lines, _, err := c.Price(tt.requests)
			if !tt.match(err) {
				t.Errorf("Price error = %v", err)
			}
			if lines != nil {
				t.Errorf("Price returned lines with an error: %v", lines)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		products []catalog.Product
	}{
		{"duplicate sku", []catalog.Product{{SKU: "TEA", Price: 1}, {SKU: "TEA", Price: 2}}},
		{"negative price", []catalog.Product{{SKU: "TEA", Price: -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := catalog.New(tt.products); err == nil {
				t.Error("New succeeded")
			}
		})
	}
}
