// Starts DynamoDB Local bound to 127.0.0.1 only.
//
// Why this exists: DynamoDB Local's own entry point (ServerRunner.main) builds a
// Jetty `new Server(port)`, which listens on every interface, and it offers no
// flag to choose the host. A developer tool must not expose an unauthenticated
// database to the network, so this launcher builds the server exactly as
// ServerRunner does, then rewrites the host of every Jetty connector to
// 127.0.0.1 before anything is bound, and only then starts it.
//
// The Jetty server is a private final field of DynamoDBProxyServer (checked
// with `javap -p` on DynamoDBLocal 1.25: `private final
// org.eclipse.jetty.server.Server server`). It is found by type rather than by
// name, so a rename in a later release does not break this.
//
// Compiled once at install time by raffle-outbox:
//   javac -cp DynamoDBLocal.jar -d <install dir> LocalLauncher.java
// (the jar's manifest Class-Path brings in DynamoDBLocal_lib/ with Jetty).
// Run with:
//   java -Djava.library.path=DynamoDBLocal_lib -cp DynamoDBLocal.jar:<dir> \
//        LocalLauncher -inMemory -port 8000 -disableTelemetry
// Every argument is passed through to DynamoDB Local unchanged. The bind host
// can be overridden with -Draffle.outbox.host=... (default 127.0.0.1).

import com.amazonaws.services.dynamodbv2.local.main.ServerRunner;
import com.amazonaws.services.dynamodbv2.local.server.DynamoDBProxyServer;
import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

public final class LocalLauncher {
    private LocalLauncher() {}

    public static void main(String[] args) {
        String host = System.getProperty("raffle.outbox.host", "127.0.0.1");
        try {
            DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
            Server jetty = findJetty(proxy);
            int rebound = 0;
            for (Connector connector : jetty.getConnectors()) {
                if (connector instanceof ServerConnector) {
                    ((ServerConnector) connector).setHost(host);
                    rebound++;
                }
            }
            if (rebound == 0) {
                // Refuse to start rather than silently listen on every interface.
                throw new IllegalStateException("no Jetty ServerConnector found to bind to " + host);
            }
            proxy.start();
            System.err.println("LocalLauncher: DynamoDB Local listening on " + host
                    + " (" + rebound + " connector(s))");
            proxy.join();
        } catch (Throwable e) {
            System.err.println("LocalLauncher: could not start DynamoDB Local: " + e);
            e.printStackTrace();
            // Jetty's threads are non-daemon: exit explicitly so the caller sees
            // the process die instead of waiting for a port that never opens.
            System.exit(1);
        }
    }

    private static Server findJetty(DynamoDBProxyServer proxy) throws IllegalAccessException {
        for (Class<?> c = proxy.getClass(); c != null; c = c.getSuperclass()) {
            for (Field f : c.getDeclaredFields()) {
                if (Server.class.isAssignableFrom(f.getType())) {
                    f.setAccessible(true);
                    Object value = f.get(proxy);
                    if (value != null) {
                        return (Server) value;
                    }
                }
            }
        }
        throw new IllegalStateException("no org.eclipse.jetty.server.Server field in "
                + proxy.getClass().getName());
    }
}
