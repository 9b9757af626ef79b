// Package catalog is the order service's built-in product list and the
// only source of prices: an order is priced here, from SKUs and
// quantities, never from amounts a client sends.
package catalog

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Currency is the ISO 4217 code of every price in the catalog.
const Currency = "EUR"

// ErrTooLarge is returned by [Catalog.Price] when a line or the order total
// does not fit in an int64 of minor units.
var ErrTooLarge = errors.New("catalog: amount too large")

// UnknownSKUError is returned by [Catalog.Price] for a SKU the catalog
// does not hold.
type UnknownSKUError struct {
	SKU string
}

func (e *UnknownSKUError) Error() string {
	return fmt.Sprintf("catalog: unknown sku %q", e.SKU)
}

// Product is one entry of the catalog. Price is in minor units of
// [Currency] (cents).
type Product struct {
	SKU   string
	Name  string
	Price int64
}

// Catalog is a fixed set of products. It is immutable and safe for
// concurrent use.
type Catalog struct {
	products []Product
	bySKU    map[string]Product
}

// New returns a catalog of products, listed in the order given. It refuses
// a duplicate SKU and a negative price.
func New(products []Product) (*Catalog, error) {
	c := &Catalog{products: slices.Clone(products), bySKU: make(map[string]Product, len(products))}
	for _, p := range products {
		if _, ok := c.bySKU[p.SKU]; ok {
			return nil, fmt.Errorf("catalog: sku %q listed twice", p.SKU)
		}
		if p.Price < 0 {
			return nil, fmt.Errorf("catalog: sku %q has a negative price", p.SKU)
		}
		c.bySKU[p.SKU] = p
	}
	return c, nil
}

// Default returns the sample shop's catalog.
func Default() *Catalog {
	c, err := New([]Product{
		{SKU: "TEA-GREEN-100G", Name: "Green tea, 100 g", Price: 650},
		{SKU: "TEA-BLACK-100G", Name: "Black tea, 100 g", Price: 590},
		{SKU: "TEA-OOLONG-50G", Name: "Oolong tea, 50 g", Price: 890},
		{SKU: "MUG-STONEWARE", Name: "Stoneware mug", Price: 1400},
		{SKU: "TEAPOT-CAST-IRON", Name: "Cast-iron teapot, 0.8 l", Price: 4900},
		{SKU: "INFUSER-STEEL", Name: "Steel tea infuser", Price: 450},
	})
	if err != nil {
		panic(err) // the list above is wrong: a programming error
	}
	return c
}

// Products returns every product, in catalog order.
func (c *Catalog) Products() []Product { return slices.Clone(c.products) }

// Lookup returns the product with the given SKU.
func (c *Catalog) Lookup(sku string) (Product, bool) {
	p, ok := c.bySKU[sku]
	return p, ok
}

// Request asks for a quantity of one product.
type Request struct {
	SKU      string
	Quantity int32
}

// Line is a priced line of an order: a product, its quantity and what the
// line costs, all in minor units of [Currency].
type Line struct {
	Product  Product
	Quantity int32
	Total    int64
}

// Price prices requests, in the order given, and returns the lines and
// their sum. It returns an [*UnknownSKUError] for the first SKU it does not
// hold, an error for a quantity below one, and [ErrTooLarge] if an amount
// would overflow.
func (c *Catalog) Price(requests []Request) ([]Line, int64, error) {
	lines := make([]Line, 0, len(requests))
	var total int64
	for _, r := range requests {
		p, ok := c.bySKU[r.SKU]
		if !ok {
			return nil, 0, &UnknownSKUError{SKU: r.SKU}
		}
		if r.Quantity < 1 {
			return nil, 0, fmt.Errorf("catalog: quantity %d of sku %q is below one",
				r.Quantity, r.SKU)
		}
		lineTotal, ok := mul(p.Price, int64(r.Quantity))
		if !ok {
			return nil, 0, ErrTooLarge
		}
		if total, ok = add(total, lineTotal); !ok {
			return nil, 0, ErrTooLarge
		}
		lines = append(lines, Line{Product: p, Quantity: r.Quantity, Total: lineTotal})
	}
	return lines, total, nil
}

// mul multiplies two non-negative amounts, reporting false on overflow.
func mul(a, b int64) (int64, bool) {
	if a != 0 && b > math.MaxInt64/a {
		return 0, false
	}
	return a * b, true
}

// add adds two non-negative amounts, reporting false on overflow.
func add(a, b int64) (int64, bool) {
	if a > math.MaxInt64-b {
		return 0, false
	}
	return a + b, true
}
