using System.Net.Http.Headers;
using Throughput.Flywheel.Demo;
using Throughput.Serving;

// The Flywheel demo: infra/demo.sh starts the platform and runs this with its URL and the run's operator key.
DemoOptions options;
try
{
    options = DemoOptions.Parse(args);
}
catch (FormatException e)
{
    Console.Error.WriteLine(e.Message);
    Console.Error.WriteLine(DemoOptions.Usage);
    return 2;
}
var operatorKey = Environment.GetEnvironmentVariable("THROUGHPUT_OPERATOR_KEY");
if (string.IsNullOrEmpty(operatorKey))
{
    Console.Error.WriteLine("THROUGHPUT_OPERATOR_KEY is not set (infra/demo.sh sets it).");
    return 2;
}

using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stop.Cancel();
};
var clients = new List<HttpClient>();
HttpClient ClientFor(string apiKey)
{
    var client = new HttpClient(new RetryAfterPatience(new SocketsHttpHandler())) { BaseAddress = options.Platform };
    client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
    clients.Add(client);
    return client;
}
try
{
    var result = await DemoRun.RunAsync(options, operatorKey, ClientFor, BrokerSettings.FromEnvironment().Uri, Console.Out, stop.Token);
    return result.MeteringMatched ? 0 : 1;
}
catch (OperationCanceledException) when (stop.IsCancellationRequested)
{
    return 130;
}
finally
{
    foreach (var client in clients) client.Dispose();
}
