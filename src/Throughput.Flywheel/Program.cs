using System.Net.Http.Headers;
using Throughput.Flywheel.Capacity;
using Throughput.Flywheel.Demo;
using Throughput.Serving;

// The Flywheel demo: infra/demo.sh starts the platform and runs this with its URL and the run's operator key.
// "calibrate": the sellable PTUs per GPU of a kind, from the Flywheel scheduler at saturation on the demo's mix; recorded
// on the platform when it is given (its URL and THROUGHPUT_OPERATOR_KEY), printed either way.
if (args is ["calibrate", ..])
{
    var calibrating = DemoOptions.Parse([.. args.Skip(1)]);
    var key = Environment.GetEnvironmentVariable("THROUGHPUT_OPERATOR_KEY");
    using var op = new HttpClient { BaseAddress = calibrating.Platform };
    op.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
    var rates = string.IsNullOrEmpty(key) ? ModelRates.Gpt4oMini : await PlatformSetup.ModelRatesAsync(op, calibrating.Scenario.Model, CancellationToken.None);
    var result = Calibration.Run(calibrating.Fleet, calibrating.Scenario.Mix, rates, calibrating.Scenario.Model);
    foreach (var t in result.Trials)
        Console.WriteLine($"  {t.WeightedPerMinute,12:N0} weighted tokens/min: worst profile served {t.WorstServedRatio:0.000} of purchased, time per output token p50 {t.TpotP50.TotalMilliseconds:0.0} ms p99 {t.TpotP99.TotalMilliseconds:0.0} ms: {(t.Holds ? "holds" : "fails")}");
    Console.WriteLine($"{result.GpuKind} serving {result.Model} ({calibrating.Fleet.Cost?.Model.Name} shape), Flywheel budget {calibrating.Fleet.TokenBudget}: {result.WeightedPerMinute:N0} weighted tokens/min in full = {result.SellablePtu} PTU per GPU");
    if (string.IsNullOrEmpty(key))
    {
        Console.WriteLine("not recorded: set THROUGHPUT_OPERATOR_KEY and give the platform's URL to record it");
        return 0;
    }
    await PlatformSetup.RecordCalibrationAsync(op, result, calibrating.Fleet, CancellationToken.None);
    Console.WriteLine($"recorded on {calibrating.Platform}: PUT /v1/operator/pools/{result.Model}/<region> with {{\"gpus\": n, \"gpuKind\": \"{result.GpuKind}\"}} sizes a pool from it");
    return 0;
}
// "splitwise": the phase-split mode (prompt nodes, generation nodes, a KV transfer between them) against the platform.
if (args.Contains("splitwise"))
{
    var key = Environment.GetEnvironmentVariable("THROUGHPUT_OPERATOR_KEY");
    if (string.IsNullOrEmpty(key))
    {
        Console.Error.WriteLine("THROUGHPUT_OPERATOR_KEY is not set (infra/demo.sh sets it).");
        return 2;
    }
    try
    {
        return await SplitwiseRun.RunAsync([.. args.Where(a => a != "splitwise")], key, BrokerSettings.FromEnvironment().Uri, Console.Out, CancellationToken.None) ? 0 : 1;
    }
    catch (FormatException e)
    {
        Console.Error.WriteLine(e.Message);
        Console.Error.WriteLine(SplitwiseRun.Usage);
        return 2;
    }
}
// "adapters": one adapter set served by the batcher (docs/adapters.md); otherwise the demo.
DemoOptions? options = null;
AdapterOptions? serving = null;
try
{
    if (args is ["adapters", ..])
    {
        serving = AdapterOptions.Parse([.. args.Skip(1)]);
        // The exchange the host was given (infra/demo.sh passes the environment to both), or the default one.
        if (Environment.GetEnvironmentVariable("Metering__Exchange") is { Length: > 0 } exchange) serving = serving with { MeteringExchange = exchange };
    }
    else
    {
        options = DemoOptions.Parse(args);
    }
}
catch (FormatException e)
{
    Console.Error.WriteLine(e.Message);
    Console.Error.WriteLine(args is ["adapters", ..] ? AdapterOptions.Usage : DemoOptions.Usage);
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
    var client = new HttpClient(new RetryAfterPatience(new SocketsHttpHandler())) { BaseAddress = serving?.Platform ?? options!.Platform };
    client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
    clients.Add(client);
    return client;
}
try
{
    if (serving is not null) return (await AdapterRun.RunAsync(serving, operatorKey, ClientFor, BrokerSettings.FromEnvironment().Uri, Console.Out, stop.Token)).Usage.Exact ? 0 : 1;
    var result = await DemoRun.RunAsync(options!, operatorKey, ClientFor, BrokerSettings.FromEnvironment().Uri, Console.Out, stop.Token);
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
