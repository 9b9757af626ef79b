package natsauth_test

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"

	"example.com/rampart/platform/natsauth"
)

func ExampleConfigFile_Render() {
	file := natsauth.ConfigFile{
		Name:     "rampart",
		Listen:   "0.0.0.0:4222",
		StoreDir: "/data",
		CertFile: "/run/nats/svid.pem",
		KeyFile:  "/run/nats/svid.key",
		CAFile:   "/run/nats/bundle.pem",
		// In a deployment, these come from natsauth.Users.
		Users: []*server.User{{
			Username: "spiffe://rampart.local/order",
			Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"orders.created"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX_order.>"}},
			},
		}},
	}
	text, err := file.Render()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(text))
	// Output:
	// {
	//   "server_name": "rampart",
	//   "listen": "0.0.0.0:4222",
	//   "jetstream": {
	//     "store_dir": "/data"
	//   },
	//   "tls": {
	//     "cert_file": "/run/nats/svid.pem",
	//     "key_file": "/run/nats/svid.key",
	//     "ca_file": "/run/nats/bundle.pem",
	//     "verify_and_map": true,
	//     "min_version": "1.3"
	//   },
	//   "authorization": {
	//     "users": [
	//       {
	//         "user": "spiffe://rampart.local/order",
	//         "permissions": {
	//           "publish": {
	//             "allow": [
	//               "orders.created"
	//             ]
	//           },
	//           "subscribe": {
	//             "allow": [
	//               "_INBOX_order.>"
	//             ]
	//           }
	//         }
	//       }
	//     ]
	//   }
	// }
}
