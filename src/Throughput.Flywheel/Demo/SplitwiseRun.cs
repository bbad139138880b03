using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using Throughput.Contracts;
using Throughput.Flywheel.Batching;
using Throughput.Flywheel.Load;
using Throughput.Serving;

namespace Throughput.Flywheel.Demo;

/// <summary>
/// The phase-split mode: a region of the model split into a prompt pool (H100s) and a generation pool (A100s), sized from
/// what one node of each phase serves at saturation; three customers buy PTUs there and offer their rate; the fleet runs
/// on a simulated clock (the minutes just before now, so every record is in the platform's past) and each phase's node
/// meters its half of every request through its own publisher. Prints each node's utilization, each phase's as the
/// platform sees it, and whether the platform's totals equal what the nodes served.
/// </summary>
public static class SplitwiseRun
{
    public const string Usage = "usage: Throughput.Flywheel splitwise [platform-url] [--minutes 2] [--prompt-nodes 1] [--generation-nodes 2] [--model gpt-4o-mini] [--sell 0.9] [--exchange throughput.metering]";

    static readonly Workload[] Workloads = [Workload.DocumentCreation, Workload.Summarization, Workload.Chat];

    public static async Task<bool> RunAsync(IReadOnlyList<string> args, string operatorKey, Uri broker, TextWriter output, CancellationToken ct)
    {
        var platform = new Uri("http://127.0.0.1:5080");
        var (minutes, model, sell, exchange) = (2.0, "gpt-4o-mini", 0.9m, MeteringTopology.Exchange);
        var fleet = new PhaseSplitOptions();
        for (var i = 0; i < args.Count; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal)) { platform = new Uri(args[i]); continue; }
            var value = i + 1 < args.Count ? args[++i] : throw new FormatException($"{args[i]} needs a value");
            switch (args[i - 1])
            {
                case "--minutes": minutes = double.Parse(value, CultureInfo.InvariantCulture); break;
                case "--prompt-nodes": fleet = fleet with { PromptNodes = int.Parse(value, CultureInfo.InvariantCulture) }; break;
                case "--generation-nodes": fleet = fleet with { GenerationNodes = int.Parse(value, CultureInfo.InvariantCulture) }; break;
                case "--model": model = value; break;
                case "--sell": sell = decimal.Parse(value, CultureInfo.InvariantCulture); break;
                case "--exchange": exchange = value; break;
                default: throw new FormatException($"unknown option {args[i - 1]}");
            }
        }
        if (minutes is <= 0 or > 30) throw new FormatException("--minutes: more than 0, at most 30 (the records must fall inside the platform's backdating window and before now)");

        var clients = new List<HttpClient>();
        HttpClient clientFor(string apiKey)
        {
            var client = new HttpClient(new RetryAfterPatience(new SocketsHttpHandler())) { BaseAddress = platform };
            client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", apiKey);
            clients.Add(client);
            return client;
        }
        try
        {
            return await RunAsync(minutes, model, sell, exchange, fleet, operatorKey, clientFor, broker, output, ct);
        }
        finally
        {
            foreach (var client in clients) client.Dispose();
        }
    }

    static async Task<bool> RunAsync(double minutes, string model, decimal sell, string exchange, PhaseSplitOptions fleet, string operatorKey, Func<string, HttpClient> clientFor,
        Uri broker, TextWriter output, CancellationToken ct)
    {
        var run = Guid.NewGuid().ToString("N")[..8];
        var region = "sw" + run;
        var op = clientFor(operatorKey);
        var rates = await PlatformSetup.ModelRatesAsync(op, model, ct);

        // A PTU of prompt work is a PTU's rate in prompt tokens; of generation work, that rate ÷ the output weight in output tokens.
        var typicalContext = (long)Workloads.Average(w => w.PromptTokens + w.OutputTokens / 2.0);
        var promptPtuPerNode = Math.Floor((decimal)(fleet.PromptTokensPerMinute / rates.TokensPerMinutePerPtu) * 10) / 10;
        var generationPtuPerNode = Math.Floor((decimal)(fleet.OutputTokensPerMinute(typicalContext) * rates.OutputWeight / rates.TokensPerMinutePerPtu) * 10) / 10;
        var promptPtu = promptPtuPerNode * fleet.PromptNodes;
        var generationPtu = generationPtuPerNode * fleet.GenerationNodes;
        await Ok(op.PutAsJsonAsync($"/v1/operator/pools/{model}/{region}/phases/prompt", new { capacityPtu = promptPtu }, ct));
        await Ok(op.PutAsJsonAsync($"/v1/operator/pools/{model}/{region}/phases/generation", new { capacityPtu = generationPtu }, ct));
        output.WriteLine($"region {region} split by phase for {model}: prompt {fleet.PromptNodes} × {fleet.PromptCost.Gpu.Name} = {fleet.PromptNodes} × {fleet.PromptTokensPerMinute:N0} prompt tokens/min = {promptPtu} PTU; " +
                         $"generation {fleet.GenerationNodes} × {fleet.GenerationCost.Gpu.Name} ({fleet.GenerationSequences} sequences of ~{typicalContext:N0} tokens) = {fleet.GenerationNodes} × {fleet.OutputTokensPerMinute(typicalContext):N0} output tokens/min = {generationPtu} PTU; " +
                         $"KV transfer of a 1,000-token prompt {fleet.TransferOf(1000).TotalMilliseconds:0.0} ms ({fleet.LinkBytesPerSecond / 1e9:0} GB/s)");

        // Customers: one tenant, a deployment per workload, together `sell` of what both phases can hold.
        var tenantId = $"sw-{run}";
        await Ok(op.PostAsJsonAsync("/v1/operator/tenants", new { tenantId, name = "Splitwise " + run, currency = "USD" }, ct));
        var tenant = clientFor((await Ok(op.PostAsync(new Uri($"/v1/operator/tenants/{tenantId}/keys", UriKind.Relative), null, ct))).GetProperty("apiKey").GetString()!);
        var each = Math.Floor(Math.Min(promptPtu, generationPtu) * sell / Workloads.Length * 10) / 10;
        var start = DateTimeOffset.UtcNow.AddMinutes(-minutes - 1);
        var clock = new SimulatedClock(start);
        var cache = new AdmissionCache(new AdmissionCacheOptions { Clock = clock });
        var arrivals = new List<Arrivals>();
        foreach (var (workload, i) in Workloads.Select((w, i) => (w, i)))
        {
            var bought = await Ok(tenant.PostAsJsonAsync("/v1/deployments", new { name = workload.Name.Replace(' ', '-'), model, region, type = "Global", ptu = each }, ct));
            var id = bought.GetProperty("id").GetString()!;
            var limit = bought.GetProperty("admission");
            var perMinute = limit.GetProperty("tokensPerMinute").GetInt64();
            cache.Apply(new AdmissionLimitChanged(id, tenantId, model, region, AdmissionState.Open, perMinute, limit.GetProperty("burstTokens").GetInt64(), 0, 0, false,
                (decimal)rates.OutputWeight, (decimal)rates.CachedDeduction, 1, start));
            arrivals.Add(new Arrivals(id, workload, perMinute, 0, rates.OutputWeight, rates.CachedDeduction, start, seed: 19 + i));
        }
        output.WriteLine($"sold: {Workloads.Length} × {each} PTU = {each * Workloads.Length} PTU of each phase ({each * Workloads.Length / promptPtu:P0} of prompt, {each * Workloads.Length / generationPtu:P0} of generation capacity); each customer offers its rate");

        // Two producers, each registered with its phase: one for the prompt nodes, one for the generation nodes.
        var promptNode = await RegisterAsync(op, $"sw-{run}-prompt", region, "prompt", ct);
        var generationNode = await RegisterAsync(op, $"sw-{run}-generation", region, "generation", ct);
        await using var promptPublisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(promptNode.Broker(broker), $"sw-{run}-prompt") { Exchange = exchange }, ct);
        await using var generationPublisher = await MeteringPublisher.CreateAsync(new MeteringPublisherOptions(generationNode.Broker(broker), $"sw-{run}-generation") { Exchange = exchange }, ct);

        var simulation = new PhaseSplitFleet(fleet, cache);
        var end = start.AddMinutes(minutes);
        var served = new Dictionary<string, (long Requests, long Prompt, long Cached, long Output)>();
        var perToken = new List<double>();
        var step = TimeSpan.FromMilliseconds(5);
        var last = start;
        for (var at = start; at <= end || simulation.Pending > 0 && at <= end.AddMinutes(1); at += step)
        {
            last = at;
            clock.Advance(at - clock.GetUtcNow());
            if (at <= end)
                foreach (var source in arrivals)
                    foreach (var request in source.Until(at)) simulation.Enqueue(request);
            foreach (var half in simulation.Step(at))
            {
                var r = half.Request;
                var (requests, prompt, cached, outputTokens) = served.GetValueOrDefault(r.DeploymentId);
                if (half.Prompt)
                {
                    served[r.DeploymentId] = (requests + 1, prompt + r.PromptTokens, cached + r.CachedTokens, outputTokens);
                    await promptPublisher.RecordAsync(new MeteringRecord($"{r.RequestId}.p", r.DeploymentId, r.RequestId, r.PromptTokens, r.CachedTokens, 0, false,
                        half.Admission.EstimatedTokens, half.StartedAt, half.FinishedAt, Phase: MeteringPhases.Prompt), ct);
                }
                else
                {
                    served[r.DeploymentId] = (requests, prompt, cached, outputTokens + r.OutputTokens);
                    if (half.TimePerOutputToken > TimeSpan.Zero) perToken.Add(half.TimePerOutputToken.TotalMilliseconds);
                    await generationPublisher.RecordAsync(new MeteringRecord($"{r.RequestId}.g", r.DeploymentId, r.RequestId, 0, 0, r.OutputTokens, false,
                        0, half.StartedAt, half.FinishedAt, Phase: MeteringPhases.Generation), ct);
                }
            }
        }
        await promptPublisher.FlushAsync(ct);
        await generationPublisher.FlushAsync(ct);

        var matched = true;
        foreach (var (deploymentId, expected) in served)
        {
            JsonElement totals = default;
            for (var attempt = 0; attempt < 60; attempt++)
            {
                totals = await tenant.GetFromJsonAsync<JsonElement>($"/v1/deployments/{deploymentId}/usage/totals", ct);
                if (Read(totals) == expected) break;
                await Task.Delay(500, ct);
            }
            var actual = Read(totals);
            matched &= actual == expected;
            output.WriteLine($"{deploymentId}: nodes served {expected.Requests:N0} requests, {expected.Prompt:N0} prompt ({expected.Cached:N0} cached), {expected.Output:N0} output tokens; " +
                             $"platform metered {actual.Requests:N0}, {actual.Prompt:N0} ({actual.Cached:N0}), {actual.Output:N0}: {(actual == expected ? "exact" : "MISMATCH")}");
        }
        output.WriteLine($"metering {(matched ? "exact" : "NOT exact")}: each request counted once (from its prompt half), each token once, from two producers");

        // Utilization: a node can be busy all the time and still far from what it serves in full (a decode batch of few sequences).
        var span = (last - start).TotalMinutes;
        output.WriteLine($"nodes over the {span:0.00} simulated minutes (the load's {minutes} and the drain after it):");
        for (var n = 0; n < fleet.PromptNodes; n++)
            output.WriteLine($"  prompt node {n} ({fleet.PromptCost.Gpu.Name}): in iterations {simulation.PromptBusy[n].TotalMinutes / span:P1} of the time, {simulation.PromptTokens[n] / span:N0} prompt tokens/min = {simulation.PromptTokens[n] / span / fleet.PromptTokensPerMinute:P1} of what it serves in full");
        for (var n = 0; n < fleet.GenerationNodes; n++)
            output.WriteLine($"  generation node {n} ({fleet.GenerationCost.Gpu.Name}): in iterations {simulation.GenerationBusy[n].TotalMinutes / span:P1} of the time, {simulation.OutputTokens[n] / span:N0} output tokens/min = {simulation.OutputTokens[n] / span / fleet.OutputTokensPerMinute(typicalContext):P1} of what it serves in full");
        perToken.Sort();
        if (perToken.Count > 0)
            output.WriteLine($"  time per output token on the generation nodes: p50 {perToken[perToken.Count / 2]:0.0} ms, p99 {perToken[(int)(perToken.Count * 0.99)]:0.0} ms over {perToken.Count:N0} requests");

        // Each phase as the platform sees it, minute by minute; its minute series is asynchronous, so wait until it holds every token.
        var expectedPrompt = served.Values.Sum(v => v.Prompt - v.Cached);
        var expectedOutput = served.Values.Sum(v => v.Output);
        List<JsonElement> minutesSeen = [];
        for (var attempt = 0; attempt < 60; attempt++)
        {
            minutesSeen.Clear();
            for (var minute = start; minute <= last.AddMinutes(1); minute = minute.AddMinutes(1))
                minutesSeen.Add(await op.GetFromJsonAsync<JsonElement>($"/v1/operator/pools/{model}/{region}/phases?minute={Uri.EscapeDataString(minute.ToString("O"))}", ct));
            if (Served(minutesSeen, "Prompt") == expectedPrompt && Served(minutesSeen, "Generation") == expectedOutput) break;
            await Task.Delay(500, ct);
        }
        foreach (var phases in minutesSeen.Where(m => m.GetProperty("phases").EnumerateArray().Any(p => p.GetProperty("servedTokens").GetInt64() > 0)))
            output.WriteLine($"platform, minute {phases.GetProperty("minute").GetDateTimeOffset():HH:mm}: " + string.Join("; ", phases.GetProperty("phases").EnumerateArray().Select(p =>
                $"{p.GetProperty("phase").GetString()} sold {p.GetProperty("soldShare").GetDecimal():P0}, served {p.GetProperty("servedTokens").GetInt64():N0} of {p.GetProperty("capacityTokensPerMinute").GetInt64():N0} tokens/min ({p.GetProperty("servedShare").GetDecimal():P1})")));
        var phasesExact = Served(minutesSeen, "Prompt") == expectedPrompt && Served(minutesSeen, "Generation") == expectedOutput;
        output.WriteLine($"platform per phase: {Served(minutesSeen, "Prompt"):N0} uncached prompt tokens (nodes: {expectedPrompt:N0}), {Served(minutesSeen, "Generation"):N0} output tokens (nodes: {expectedOutput:N0}): {(phasesExact ? "exact" : "NOT exact")}");
        return matched && phasesExact;

        static long Served(IEnumerable<JsonElement> minutes, string phase) => minutes.Sum(m => m.GetProperty("phases").EnumerateArray()
            .Where(p => p.GetProperty("phase").GetString() == phase).Sum(p => p.GetProperty("servedTokens").GetInt64()));

        static (long Requests, long Prompt, long Cached, long Output) Read(JsonElement t) =>
            (t.GetProperty("records").GetInt64(), t.GetProperty("promptTokens").GetInt64(), t.GetProperty("cachedTokens").GetInt64(), t.GetProperty("outputTokens").GetInt64());
    }

    static async Task<ServingNodeAccess> RegisterAsync(HttpClient op, string producerId, string region, string phase, CancellationToken ct)
    {
        await Ok(op.PutAsJsonAsync($"/v1/operator/serving-nodes/{producerId}", new { regions = new[] { region }, phase }, ct));
        var credentials = await Ok(op.PostAsync(new Uri($"/v1/operator/serving-nodes/{producerId}/credentials", UriKind.Relative), null, ct));
        return new ServingNodeAccess("", credentials.GetProperty("brokerUser").GetString()!, credentials.GetProperty("brokerPassword").GetString()!);
    }

    static async Task<JsonElement> Ok(Task<HttpResponseMessage> call)
    {
        using var response = await call;
        var body = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode)
            throw new HttpRequestException($"{response.RequestMessage?.Method} {response.RequestMessage?.RequestUri} answered {(int)response.StatusCode}: {body}");
        return body.Length == 0 ? default : JsonDocument.Parse(body).RootElement.Clone();
    }
}
