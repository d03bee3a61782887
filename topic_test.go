package fanout_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gofanout/fanout"
)

func TestValidateTopic(t *testing.T) {
	t.Parallel()
	good := []string{"a", "inventory.SKU-1", "saga:7f3a/flight", "user@example=1+2", strings.Repeat("x", fanout.MaxTopicLength)}
	for _, name := range good {
		if err := fanout.ValidateTopic(name); err != nil {
			t.Errorf("ValidateTopic(%q) = %v, want nil", name, err)
		}
	}
	bad := []string{"", ".a", "a.", "a b", "a*", "a>", "ä", "a\x00", "a\n", strings.Repeat("x", fanout.MaxTopicLength+1)}
	for _, name := range bad {
		if err := fanout.ValidateTopic(name); !errors.Is(err, fanout.ErrInvalidTopic) {
			t.Errorf("ValidateTopic(%q) = %v, want ErrInvalidTopic", name, err)
		}
	}
}

func FuzzValidateTopic(f *testing.F) {
	for _, s := range []string{"a", "inventory.SKU-1", ".a", "a b", "ä", strings.Repeat("y", 201)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := fanout.ValidateTopic(name)
		if err != nil {
			if !errors.Is(err, fanout.ErrInvalidTopic) {
				t.Fatalf("error %v does not match ErrInvalidTopic", err)
			}
			return
		}
		if len(name) == 0 || len(name) > fanout.MaxTopicLength || name[0] == '.' || name[len(name)-1] == '.' {
			t.Fatalf("accepted %q", name)
		}
		for _, c := range []byte(name) {
			if c <= ' ' || c >= 0x7f || strings.IndexByte("*>\"'\\#?&%", c) >= 0 {
				t.Fatalf("accepted %q with byte %q", name, c)
			}
		}
	})
}
