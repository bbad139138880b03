namespace Throughput.Flywheel.Batching;

/// <summary>
/// The adapters a node holds in GPU memory: up to <see cref="Capacity"/>, the least recently used one evicted for a cold one.
/// The memory is the room left beside the weights and the KV caches; S-LoRA pages adapters into the same pool as the KV
/// cache, here it is a fixed number of slots. Not thread-safe: one loop drives a node.
/// </summary>
public sealed class AdapterSlots
{
    readonly LinkedList<string> _byUse = new(); // most recently used first
    readonly Dictionary<string, LinkedListNode<string>> _held = new(StringComparer.Ordinal);

    public AdapterSlots(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
    }

    public int Capacity { get; }

    public int Held => _held.Count;

    /// <summary>Adapters copied in because they were not held.</summary>
    public long Loads { get; private set; }

    public long Evictions { get; private set; }

    public bool Holds(string adapterId) => _held.ContainsKey(adapterId);

    /// <summary>Marks the adapter used now; true when it was cold, so the iteration using it first pays its load.</summary>
    public bool Use(string adapterId)
    {
        if (_held.TryGetValue(adapterId, out var used))
        {
            _byUse.Remove(used);
            _byUse.AddFirst(used);
            return false;
        }
        if (_held.Count == Capacity)
        {
            _held.Remove(_byUse.Last!.Value);
            _byUse.RemoveLast();
            Evictions++;
        }
        _held.Add(adapterId, _byUse.AddFirst(adapterId));
        Loads++;
        return true;
    }
}
