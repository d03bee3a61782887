package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// product is one entry of the catalogue.
type product struct {
	SKU   string `json:"sku"`
	Name  string `json:"name"`
	Topic string `json:"topic"`
	// Stock is the quantity published at start.
	Stock int64 `json:"-"`
}

// topicPrefix starts every product's topic: "inventory.SKU-1".
const topicPrefix = "inventory."

// defaultCatalog is the built-in catalogue.
func defaultCatalog() []product {
	return []product{
		{SKU: "SKU-1", Name: "Espresso beans, 1 kg", Stock: 24},
		{SKU: "SKU-2", Name: "Moka pot, 6 cups", Stock: 8},
		{SKU: "SKU-3", Name: "Milk frother", Stock: 0},
		{SKU: "SKU-4", Name: "Burr grinder", Stock: 5},
		{SKU: "SKU-5", Name: "Ceramic cups, set of 4", Stock: 42},
	}
}

// maxQuantity bounds a stock quantity, so that it stays exact in the
// browser's float64 numbers.
const maxQuantity = 1 << 40

// parseStock applies a -stock flag value, "SKU-1=10,SKU-3=0", to catalog.
func parseStock(catalog []product, s string) ([]product, error) {
	out := slices.Clone(catalog)
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		sku, qty, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("stock %q: want SKU=QUANTITY", part)
		}
		n, err := strconv.ParseInt(qty, 10, 64)
		if err != nil || n < 0 || n > maxQuantity {
			return nil, fmt.Errorf("stock %q: quantity must be an integer from 0 to %d", part, int64(maxQuantity))
		}
		i := slices.IndexFunc(out, func(p product) bool { return p.SKU == sku })
		if i < 0 {
			return nil, fmt.Errorf("stock %q: unknown product %q", part, sku)
		}
		out[i].Stock = n
	}
	return out, nil
}

// stockEvent is the "stock changed" event of the inventory service, exactly
// as it sends it: {"ProductId":"SKU-1","NewQuantity":5,"Timestamp":1700000000000}.
// Timestamp is in milliseconds since the Unix epoch.
type stockEvent struct {
	ProductId   string
	NewQuantity int64
	Timestamp   int64
}

// errBadEvent is the cause of every error of parseEvent.
var errBadEvent = errors.New("bad event")

// parseEvent decodes and validates an event. Field names match case
// insensitively (Go's encoding/json rule), and unknown fields are ignored,
// so that the service may add fields without breaking this endpoint.
func parseEvent(b []byte) (stockEvent, error) {
	var raw struct {
		ProductId   *string
		NewQuantity json.RawMessage
		Timestamp   json.RawMessage
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&raw); err != nil {
		return stockEvent{}, fmt.Errorf("%w: %v", errBadEvent, err)
	}
	if d.More() {
		return stockEvent{}, fmt.Errorf("%w: trailing data after the event", errBadEvent)
	}
	var ev stockEvent
	switch {
	case raw.ProductId == nil || *raw.ProductId == "":
		return ev, fmt.Errorf("%w: ProductId is missing", errBadEvent)
	case raw.NewQuantity == nil:
		return ev, fmt.Errorf("%w: NewQuantity is missing", errBadEvent)
	case raw.Timestamp == nil:
		return ev, fmt.Errorf("%w: Timestamp is missing", errBadEvent)
	}
	ev.ProductId = *raw.ProductId
	// Numbers must be JSON integers: not strings, not 5.0.
	q, err := strconv.ParseInt(string(raw.NewQuantity), 10, 64)
	if err != nil || q < 0 || q > maxQuantity {
		return ev, fmt.Errorf("%w: NewQuantity must be an integer from 0 to %d", errBadEvent, int64(maxQuantity))
	}
	ev.NewQuantity = q
	ts, err := strconv.ParseInt(string(raw.Timestamp), 10, 64)
	if err != nil || ts <= 0 {
		return ev, fmt.Errorf("%w: Timestamp must be a positive integer (ms since the Unix epoch)", errBadEvent)
	}
	ev.Timestamp = ts
	return ev, nil
}

// payload is what the event's topic carries: the event in the service's own
// shape, so that a page reads the same fields the service sends.
func (ev stockEvent) payload() []byte {
	b, _ := json.Marshal(ev)
	return b
}
