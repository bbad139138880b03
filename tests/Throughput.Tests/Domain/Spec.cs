using System.Text.Json;
using Throughput.Http;
using Xunit.Sdk;

namespace Throughput.Tests.Domain;

/// <summary>
/// Given the events of one stream, when a decision is taken on the state they fold to (by the aggregate's own fold),
/// then these events, or this refusal. One scenario per test: <c>Given(…).When(…).Then(…)</c>.
/// </summary>
public sealed class Spec<TState, TEvent>(Func<TState?, TEvent, TState> evolve) where TState : class
{
    public Scenario<TState> Given(params TEvent[] events) => new(events.Aggregate((TState?)null, (state, e) => evolve(state, e)));
}

public sealed class Scenario<TState>(TState? state) where TState : class
{
    /// <summary>The state the given events fold to, for specs of the fold itself and for the other streams a decision reads.</summary>
    public TState State => state ?? throw new InvalidOperationException("No events were given, so there is no state.");

    /// <summary>
    /// The decision, on the folded state: null when no events were given (the deciders that start a stream take none).
    /// A decision that writes two streams lists both streams' events.
    /// </summary>
    public Outcome When(Func<TState, IEnumerable<object>> decide)
    {
        try
        {
            return new Outcome([.. decide(state!)], null);
        }
        catch (RuleViolation refusal)
        {
            return new Outcome([], refusal);
        }
    }
}

public sealed class Outcome(IReadOnlyList<object> events, RuleViolation? refusal)
{
    /// <summary>
    /// The same events in the same order: of the same types, with equivalent values (lists by their items, decimals
    /// by value, so 1.0 is 1).
    /// </summary>
    public void Then(params object[] expected)
    {
        if (refusal is not null)
            throw new XunitException($"Expected events:\n{Listed(expected)}\nbut the decision was refused ({refusal.Kind}): {refusal.Message}");
        if (expected.Length != events.Count || !expected.Zip(events).All(pair => Same(pair.First, pair.Second)))
            throw new XunitException($"Expected events:\n{Listed(expected)}\nActual events:\n{Listed(events)}");
    }

    /// <summary>An idempotent repeat, or a change to what already is: no events.</summary>
    public void ThenNothing() => Then();

    /// <summary>The decision was refused with this kind of violation; returned for a look at its message.</summary>
    public RuleViolation ThenFails(RuleKind kind)
    {
        if (refusal is null)
            throw new XunitException($"Expected a refusal ({kind}), but the decision returned events:\n{Listed(events)}");
        if (refusal.Kind != kind)
            throw new XunitException($"Expected a refusal ({kind}), but it was refused ({refusal.Kind}): {refusal.Message}");
        return refusal;
    }

    static bool Same(object expected, object actual)
    {
        if (expected.GetType() != actual.GetType()) return false;
        try
        {
            Assert.Equivalent(expected, actual, strict: true);
            return true;
        }
        catch (EquivalentException)
        {
            return false;
        }
    }

    static string Listed(IEnumerable<object> events) =>
        events.Any() ? string.Join("\n", events.Select(e => $"  {e.GetType().Name} {JsonSerializer.Serialize(e, e.GetType())}")) : "  (none)";
}
