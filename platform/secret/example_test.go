package secret_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"example.com/rampart/platform/secret"
)

func ExampleString() {
	type config struct {
		User     string        `json:"user"`
		Password secret.String `json:"password"`
	}
	cfg := config{User: "app", Password: secret.New("hunter2")}

	fmt.Printf("%v\n", cfg)
	fmt.Printf("%+v\n", cfg)
	out, err := json.Marshal(cfg)
	if err != nil {
		fmt.Println(err)
	}
	fmt.Println(string(out))

	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	logger.Info("config loaded", "password", cfg.Password)

	fmt.Println(len(cfg.Password.Reveal()))
	// Output:
	// {app [REDACTED]}
	// {User:app Password:[REDACTED]}
	// {"user":"app","password":"[REDACTED]"}
	// level=INFO msg="config loaded" password=[REDACTED]
	// 7
}
